-- Execution closes (job/execution.py, backtest.execution_lag_days): for each asset and month, the close
-- of the first trading day on or after calendar day `day` of the month (the day the previous month's
-- decision is traded: 4 = the trading day after the CronJob's 3rd), and the return from it to the next
-- month's execution close (NULL when that month has no execution close yet, or a month is missing).
-- Parameters, in order: day (1..20), first month (DATE), last known date (DATE: the as-of month's end,
-- so nothing after the as-of month is read).
WITH closes AS (
    SELECT p.asset,
           date_trunc('month', p.date)::DATE AS month,
           min(p.date) AS date,
           arg_min(p.close, p.date) AS close
    FROM prices_daily p JOIN assets a USING (asset)
    WHERE dayofmonth(p.date) >= ? AND p.date >= ? AND p.date <= ?
    GROUP BY ALL
)
SELECT asset, month, date, close,
       lead(date) OVER w AS exit_date,
       lead(close) OVER w AS exit_close,
       CASE WHEN lead(month) OVER w = month + INTERVAL 1 MONTH THEN lead(close) OVER w / close - 1 END AS ret
FROM closes
WINDOW w AS (PARTITION BY asset ORDER BY month)
ORDER BY asset, month;
