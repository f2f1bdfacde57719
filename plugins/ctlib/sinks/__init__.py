"""Where decoded entries go: the Parquet lake and Kafka."""
