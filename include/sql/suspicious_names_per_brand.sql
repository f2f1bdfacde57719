-- Alerted names per impersonated brand over the last 7 days, with an example and the top rules.
select brand, count(distinct registered_domain) as domains, count(*) as names,
       max(score) as max_score, any_value(name) as example
from alerts
where timestamp >= now() - interval 7 day and brand is not null
group by brand
order by domains desc;
