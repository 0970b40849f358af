-- One row per run of consecutive months of [data.start, as-of] in which no source had a risk-free value
-- (neither the stored series nor TB3MS): the rate there is forward-filled from the last known month, or
-- missing (0.0 in the dataset) before any known value. rf_from_source is NULL on every row, so the
-- warning check on it lists the runs, e.g. months=2025-01..2025-02 n_months=2 source=forward-filled ...
WITH months AS (
    SELECT month, source, rf_known
    FROM risk_free_monthly
    WHERE month BETWEEN $start AND $as_of
),
marked AS (
    SELECT *, date_diff('month', DATE '1900-01-01', month)
              - row_number() OVER (ORDER BY month) AS run
    FROM months WHERE rf_known IS NULL
)
SELECT CASE WHEN min(month) = max(month) THEN strftime(min(month), '%Y-%m')
            ELSE strftime(min(month), '%Y-%m') || '..' || strftime(max(month), '%Y-%m') END AS months,
       count(*) AS n_months,
       arg_min(source, month) AS source,
       CAST(NULL AS DOUBLE) AS rf_from_source
FROM marked
GROUP BY run
ORDER BY min(month);
