-- Runs of identical consecutive closes per asset inside the validation window (gaps and islands):
-- one row per run of two or more trading days. A feed that stopped updating shows as a long run.
WITH p AS (
    SELECT asset, date, close,
           (close IS DISTINCT FROM lag(close) OVER (PARTITION BY asset ORDER BY date))::INTEGER AS changed
    FROM prices_daily
    WHERE date >= $window_start AND date <= $as_of_end AND asset IN (SELECT asset FROM assets)
),
islands AS (
    SELECT *, sum(changed) OVER (PARTITION BY asset ORDER BY date) AS island FROM p
)
SELECT asset, strftime(min(date), '%Y-%m-%d') AS first_day, strftime(max(date), '%Y-%m-%d') AS last_day,
       count(*) AS run_days, any_value(close) AS close
FROM islands
GROUP BY asset, island
HAVING count(*) >= 2
ORDER BY asset, first_day;
