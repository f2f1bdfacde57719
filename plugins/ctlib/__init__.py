"""ctlib: the Certificate Transparency monitoring library behind ct-airflow's DAGs.

Plain Python, importable and testable without a scheduler. One module per concern;
I/O at the edges (http, rfc6962, static, sinks, state), pure functions in the middle.
"""
