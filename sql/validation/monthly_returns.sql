-- One row per (asset, month) of the window [data.start, as-of]: the grid of every asset of the universe
-- times every calendar month, left-joined to the monthly returns. A NULL ret is a gap (no month-end
-- close, or no previous month-end); a duplicated (asset, month) would show as two rows.
WITH months AS (
    SELECT unnest(generate_series($start, $as_of, INTERVAL 1 MONTH))::DATE AS month
),
grid AS (
    SELECT a.asset, a.position, m.month FROM assets a CROSS JOIN months m
)
SELECT g.asset, strftime(g.month, '%Y-%m') AS month, r.date AS month_end, r.ret
FROM grid g LEFT JOIN monthly_returns r ON r.asset = g.asset AND r.month = g.month
ORDER BY g.position, g.month;
