-- One row per (asset, month) of each asset's life in the window: every calendar month from the later of
-- data.start and the asset's first month (the month after its first month-end price; see the view
-- asset_first_months) to the as-of month, left-joined to the monthly returns. Months before an asset's
-- first price are not gaps (unbalanced panels); an asset without any price has every month of the window.
-- A NULL ret is a gap (no month-end close, or no previous month-end); a duplicated (asset, month) would
-- show as two rows.
WITH months AS (
    SELECT unnest(generate_series($start, $as_of, INTERVAL 1 MONTH))::DATE AS month
),
grid AS (
    SELECT f.asset, f.position, m.month
    FROM asset_first_months f CROSS JOIN months m
    WHERE f.first_month IS NULL OR m.month >= f.first_month
)
SELECT g.asset, strftime(g.month, '%Y-%m') AS month, r.date AS month_end, r.ret
FROM grid g LEFT JOIN monthly_returns r ON r.asset = g.asset AND r.month = g.month
ORDER BY g.position, g.month;
