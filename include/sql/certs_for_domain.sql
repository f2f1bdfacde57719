-- Certificates (and precertificates) naming a domain pattern, newest first.
-- Parameter $pattern: a SQL LIKE pattern on DNS names, e.g. '%.example.com' or '%paypal%'.
--   python -m ctlib.query --file include/sql/certs_for_domain.sql --param pattern='%example.com'
select timestamp, log_slug, index, entry_type, subject_cn, issuer_org, not_before, not_after,
       dns_names, cert_sha256
from certs
where len(list_filter(dns_names, lambda n: n like $pattern)) > 0
order by timestamp desc
limit 200;
