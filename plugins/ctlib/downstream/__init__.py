"""Work on ingested certificates: phishing scores of their DNS names (score/, and scoring
for certs files -> scores/ and alerts/) and threat-intel enrichment of alerted domains
(enrich/)."""
