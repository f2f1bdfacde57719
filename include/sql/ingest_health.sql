-- Per log: entries in the lake, undecodable entries, incidents, and the newest entry time.
select c.log_slug, c.entries, coalesce(e.errors, 0) as errors, coalesce(i.incidents, 0) as incidents,
       c.newest_entry
from (select log_slug, count(*) as entries, max(timestamp) as newest_entry from certs group by 1) c
left join (select log_slug, count(*) as errors from errors group by 1) e using (log_slug)
left join (select log_slug, count(*) as incidents from incidents group by 1) i using (log_slug)
order by c.log_slug;
