-- Enriched domains at or above a risk level, most recent enrichment per domain first.
-- Parameter $min_risk (default to try: 60).
--   python -m ctlib.query --file include/sql/enriched_high_risk.sql --param min_risk=60
select domain, risk, risk_reasons, score, ts_max_severity, ts_max_confidence, pt_registered,
       names, enriched_at
from enrichment
where risk >= cast($min_risk as double)
qualify row_number() over (partition by domain order by enriched_at desc) = 1
order by risk desc, enriched_at desc;
