"""Local stand-ins for the outside world, for tests, `make demo` and benchmarks.

`certs` makes realistic certificates and precertificates from a small test PKI;
`ctlog` serves them from local RFC 6962 CT logs on 127.0.0.1 with configurable
growth and faults. Nothing here is imported by the pipeline itself.
"""
