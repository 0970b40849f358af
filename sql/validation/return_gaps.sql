-- Every gap inside an asset's life in the window, in ONE row (no row when there is none), so that a
-- failure's one line names every asset and month: gaps = 'VGT 2010-03..2010-04; VHT 2012-07'.
-- An asset's life runs from the later of data.start and its first month (the month after its first
-- month-end price) to the as-of month; an asset without any price is missing the whole window.
WITH months AS (
    SELECT unnest(generate_series($start, $as_of, INTERVAL 1 MONTH))::DATE AS month
),
grid AS (
    SELECT f.asset, f.position, f.first_month, m.month
    FROM asset_first_months f CROSS JOIN months m
    WHERE f.first_month IS NULL OR m.month >= f.first_month
),
missing AS (
    SELECT g.asset, g.position, g.first_month, g.month,
           date_diff('month', DATE '1900-01-01', g.month)
               - row_number() OVER (PARTITION BY g.asset ORDER BY g.month) AS run
    FROM grid g LEFT JOIN monthly_returns r ON r.asset = g.asset AND r.month = g.month
    WHERE r.ret IS NULL
),
spans AS (
    SELECT asset, position, any_value(first_month) AS first_month, min(month) AS lo, max(month) AS hi,
           count(*) AS n
    FROM missing GROUP BY asset, position, run
),
per_asset AS (
    SELECT asset, position, sum(n) AS n,
           string_agg(CASE WHEN lo = hi THEN strftime(lo, '%Y-%m')
                           ELSE strftime(lo, '%Y-%m') || '..' || strftime(hi, '%Y-%m') END, ', ' ORDER BY lo)
               || CASE WHEN any_value(first_month) IS NULL THEN ' (no price at all)' ELSE '' END AS months
    FROM spans GROUP BY asset, position
)
SELECT count(*) AS n_assets, CAST(sum(n) AS BIGINT) AS n_months,
       string_agg(asset || ' ' || months, '; ' ORDER BY position) AS gaps
FROM per_asset
HAVING count(*) > 0;
