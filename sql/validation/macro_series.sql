-- One row per macro series: its metadata and how many of its stored observations have no value.
SELECT m.series, m.tcode, m.market, count(o.series) AS n_obs,
       count(o.series) FILTER (o.value IS NULL) AS n_null,
       strftime(min(o.period), '%Y-%m') AS first_period, strftime(max(o.period), '%Y-%m') AS last_period
FROM series_meta m LEFT JOIN macro_observations o USING (series)
GROUP BY ALL
ORDER BY m.series;
