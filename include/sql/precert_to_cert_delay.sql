-- How long after its precertificate a final certificate was logged: joins the two on
-- tbs_sha256 (the TBS without the poison / SCT extensions is the same for both).
with pre as (select tbs_sha256, min(timestamp) as precert_at, any_value(issuer_org) as issuer_org
             from certs where entry_type = 'precert' group by tbs_sha256),
     fin as (select tbs_sha256, min(timestamp) as cert_at from certs where entry_type = 'x509' group by tbs_sha256)
select issuer_org, count(*) as pairs,
       median(date_diff('second', precert_at, cert_at)) as median_delay_s,
       max(date_diff('second', precert_at, cert_at)) as max_delay_s
from pre join fin using (tbs_sha256)
group by issuer_org
order by pairs desc;
