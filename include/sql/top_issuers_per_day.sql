-- The ten busiest issuing organisations per UTC day (by entry timestamp), across all logs.
-- Precertificates and final certificates both count (use entry_type to split them).
select date, issuer_org, count(*) as entries,
       count(*) filter (where entry_type = 'precert') as precerts
from (select cast(timestamp as date) as date, coalesce(issuer_org, issuer) as issuer_org, entry_type from certs)
group by date, issuer_org
qualify row_number() over (partition by date order by entries desc) <= 10
order by date desc, entries desc;
