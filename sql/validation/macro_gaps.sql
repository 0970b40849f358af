-- Holes inside each macro series' history: months between a series' first and last observation that
-- have no value. FRED-MD vintages are checked one by one (each is a complete panel); ALFRED rows
-- (vintage 'alfred:<date>') hold one revision each, so they are checked together. `gap` is
-- '<series> <YYYY-MM>', the form the tolerated gaps in expectations/macro.json are written in.
WITH obs AS (
    SELECT DISTINCT series, CASE WHEN vintage LIKE 'alfred:%' THEN 'alfred' ELSE vintage END AS vintage, period
    FROM macro_observations
    WHERE value IS NOT NULL
),
span AS (
    SELECT series, vintage, min(period) AS first_period, max(period) AS last_period FROM obs GROUP BY ALL
),
grid AS (
    SELECT series, vintage, unnest(generate_series(first_period, last_period, INTERVAL 1 MONTH))::DATE AS period
    FROM span
)
SELECT g.series, g.vintage, strftime(g.period, '%Y-%m') AS period,
       g.series || ' ' || strftime(g.period, '%Y-%m') AS gap
FROM grid g ANTI JOIN obs o ON o.series = g.series AND o.vintage = g.vintage AND o.period = g.period
ORDER BY g.series, g.vintage, g.period;
