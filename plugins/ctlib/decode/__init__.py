"""Log entries to lake rows: X.509 and precertificate fields (x509) and the batch decoder
that turns a window of raw entries into certs and errors tables (entries)."""
