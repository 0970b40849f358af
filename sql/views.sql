-- Views and table macros over the raw tables: month-end prices, monthly returns, decision months,
-- point-in-time macro observations and the long feature table. Re-created on every connection.

-- The last weekday of the month that starts at d (decisions and pseudo publication dates fall on it).
CREATE OR REPLACE MACRO last_weekday(d) AS
    last_day(d) - CASE dayofweek(last_day(d)) WHEN 6 THEN 1 WHEN 0 THEN 2 ELSE 0 END;

-- Month-end (last trading day) adjusted close per asset; a month is complete when the asset has a
-- later trading day, or its last day is at or after the month's last weekday.
CREATE OR REPLACE VIEW month_end_prices AS
WITH per_month AS (
    SELECT p.asset, date_trunc('month', p.date)::DATE AS month, max(p.date) AS date,
           arg_max(p.close, p.date) AS close, count(*) AS trading_days
    FROM prices_daily p JOIN assets a USING (asset)
    GROUP BY ALL
)
SELECT asset, month, date, close, trading_days,
       (lead(month) OVER (PARTITION BY asset ORDER BY month) IS NOT NULL
        OR date >= last_weekday(month)) AS complete
FROM per_month;

-- Monthly total return of each asset over each complete month. NULL when the previous month-end is
-- missing (a gap never turns into a silent two-month return).
CREATE OR REPLACE VIEW monthly_returns AS
SELECT asset, month, date, close,
       CASE WHEN lag(month) OVER (PARTITION BY asset ORDER BY month) = month - INTERVAL 1 MONTH
            THEN close / lag(close) OVER (PARTITION BY asset ORDER BY month) - 1 END AS ret
FROM month_end_prices
WHERE complete;

-- The first month in which each asset of the universe can have a return: the month after its first
-- month-end price (NULL: no price at all). Months before it are not gaps: the asset has not started.
CREATE OR REPLACE VIEW asset_first_months AS
SELECT a.asset, a.position, a.is_benchmark,
       (min(p.month) + INTERVAL 1 MONTH)::DATE AS first_month
FROM assets a LEFT JOIN month_end_prices p ON p.asset = a.asset
GROUP BY ALL;

-- Decision months: complete months in which the benchmark and every asset that has started (its first
-- month is at or before the month) have a return; an asset that starts later is simply not there yet
-- (unbalanced panels). A gap inside an asset's life leaves the month out (the prices suite names it).
-- The decision date is the month's last trading day (the latest month-end date across assets).
CREATE OR REPLACE VIEW decision_months AS
WITH have AS (
    SELECT r.month, max(r.date) AS decision_date, count(*) AS n_assets, bool_or(f.is_benchmark) AS benchmark
    FROM monthly_returns r JOIN asset_first_months f USING (asset)
    WHERE r.ret IS NOT NULL
    GROUP BY r.month
),
started AS (
    SELECT h.month, count(f.asset) AS n_started
    FROM have h JOIN asset_first_months f ON f.first_month <= h.month
    GROUP BY h.month
)
SELECT h.month, h.decision_date, h.n_assets
FROM have h JOIN started s USING (month)
WHERE h.benchmark AND h.n_assets = s.n_started
ORDER BY h.month;

-- Every macro observation with the date from which the job may use it (available_at):
--   * the real publication date where ALFRED gave one (realtime_start);
--   * for the earliest vintage holding a period: the period's month end plus the series' publication
--     lag, on a weekday (pseudo-real-time: what one FRED-MD vintage can give);
--   * for later vintages of the same period: no earlier than that vintage's release.
CREATE OR REPLACE MACRO macro_available(lag_macro, lag_market) AS TABLE
WITH obs AS (
    SELECT o.series, o.period, o.value, o.vintage, o.vintage_release, o.realtime_start, o.source,
           m.tcode, m.market,
           CASE WHEN m.market THEN lag_market ELSE lag_macro END AS lag_months,
           min(coalesce(o.vintage_release, DATE '1900-01-01'))
               OVER (PARTITION BY o.series, o.period) AS first_release
    FROM macro_observations o JOIN series_meta m USING (series)
    WHERE o.value IS NOT NULL
)
SELECT series, period, value, vintage, source, tcode, market, lag_months,
       CASE
           WHEN realtime_start IS NOT NULL THEN realtime_start
           WHEN coalesce(vintage_release, DATE '1900-01-01') = first_release
               THEN last_weekday(period + to_months(lag_months))
           ELSE greatest(last_weekday(period + to_months(lag_months)), vintage_release)
       END AS available_at
FROM obs;

-- The long feature table: for each decision month and series, the transformed value known at the
-- decision date. For each period the latest revision available by then is used; the transformation
-- (FRED-MD tcode) uses the three latest known periods, which must be consecutive, taking the earlier
-- two from the same vintage as the latest one where that vintage holds them (a FRED-MD vintage is a
-- whole panel): mixing vintages would difference levels on different bases (INDPRO is 2012=100 in
-- the 2019-10 vintage and 2017=100 in 2025-02: a fake -7.5 % month). ALFRED rows, one vintage per
-- release date, fall back to the values known at the decision date. A value older than the series'
-- lag plus max_stale months is not forward-filled (value NULL, reason 'stale').
CREATE OR REPLACE MACRO macro_features(lag_macro, lag_market, max_stale) AS TABLE
WITH avail AS (SELECT * FROM macro_available(lag_macro, lag_market)),
-- The last decision month that may still use a period, precomputed so that the join below has two plain
-- column inequalities (an IEJoin) instead of a nested loop filtered afterwards (2.7 s -> 0.7 s, 190k rows).
windowed AS (
    SELECT *, CAST(period + to_months(lag_months + max_stale + 3) AS DATE) AS usable_until FROM avail
),
known AS (
    SELECT d.month, d.decision_date, a.series, a.period, a.tcode, a.lag_months,
           arg_max(a.value, a.available_at) AS value,
           max(a.available_at) AS available_at,
           arg_max(a.vintage, a.available_at) AS vintage
    FROM decision_months d
    JOIN windowed a
      ON a.available_at <= d.decision_date
     AND a.usable_until >= d.month
    GROUP BY ALL
),
ranked AS (
    SELECT *, row_number() OVER (PARTITION BY month, series ORDER BY period DESC) AS rn FROM known
),
wide AS (
    SELECT month, decision_date, series, tcode, lag_months,
           max(period) FILTER (rn = 1) AS p0, max(period) FILTER (rn = 2) AS p1, max(period) FILTER (rn = 3) AS p2,
           max(value) FILTER (rn = 1) AS x0, max(value) FILTER (rn = 2) AS x1, max(value) FILTER (rn = 3) AS x2,
           max(available_at) FILTER (rn = 1) AS available_at,
           max(vintage) FILTER (rn = 1) AS vintage
    FROM ranked WHERE rn <= 3
    GROUP BY ALL
),
same_vintage AS (
    SELECT w.month, w.decision_date, w.series, w.tcode, w.lag_months, w.p0, w.p1, w.p2, w.x0,
           coalesce(v1.value, w.x1) AS x1, coalesce(v2.value, w.x2) AS x2, w.available_at, w.vintage
    FROM wide w
    LEFT JOIN avail v1 ON v1.series = w.series AND v1.vintage = w.vintage AND v1.period = w.p1
    LEFT JOIN avail v2 ON v2.series = w.series AND v2.vintage = w.vintage AND v2.period = w.p2
),
checked AS (
    SELECT *,
           date_diff('month', p0, month) - lag_months AS staleness,
           (p1 = p0 - INTERVAL 1 MONTH) AS ok1,
           (p1 = p0 - INTERVAL 1 MONTH AND p2 = p1 - INTERVAL 1 MONTH) AS ok2
    FROM same_vintage
)
SELECT month, decision_date, series, tcode, p0 AS period, available_at, vintage, staleness,
       CASE
           WHEN staleness > max_stale THEN NULL
           WHEN tcode = 1 THEN x0
           WHEN tcode = 2 AND ok1 THEN x0 - x1
           WHEN tcode = 3 AND ok2 THEN (x0 - x1) - (x1 - x2)
           WHEN tcode = 4 AND x0 > 0 THEN ln(x0)
           WHEN tcode = 5 AND ok1 AND x0 > 0 AND x1 > 0 THEN ln(x0) - ln(x1)
           WHEN tcode = 6 AND ok2 AND x0 > 0 AND x1 > 0 AND x2 > 0 THEN (ln(x0) - ln(x1)) - (ln(x1) - ln(x2))
           WHEN tcode = 7 AND ok2 AND x1 <> 0 AND x2 <> 0 THEN (x0 / x1 - 1) - (x1 / x2 - 1)
       END AS value,
       CASE WHEN staleness > max_stale THEN 'stale'
            WHEN (tcode IN (2, 5) AND NOT coalesce(ok1, false)) OR (tcode IN (3, 6, 7) AND NOT coalesce(ok2, false))
                THEN 'gap' END AS null_reason
FROM checked;

-- Monthly risk-free rate: the stored series (Fama/French RF, or synthetic) where present, else the
-- 3-month T-bill from the macro data (TB3MS, percent per year, as known at the month's end). A month
-- where neither has a value takes the last known value (forward fill; source 'forward-filled <source>
-- of YYYY-MM'), never a silent 0.0: rf_known is NULL there, and the validation suite risk_free warns,
-- listing those months. Months before any known value stay NULL (missing in the dataset too: the
-- backtest treats them as 0 with a logged warning in normalised mode and refuses levered mode; the same
-- validation warning lists them with source 'none').
CREATE OR REPLACE VIEW risk_free_monthly AS
WITH tbill AS (
    SELECT period AS month, arg_max(value, coalesce(realtime_start, vintage_release, period)) / 1200.0 AS rf
    FROM macro_observations WHERE series = 'TB3MS' AND value IS NOT NULL GROUP BY period
),
known AS (
    SELECT d.month, coalesce(r.rf, t.rf) AS rf_known,
           CASE WHEN r.rf IS NOT NULL THEN r.source WHEN t.rf IS NOT NULL THEN 'TB3MS' END AS known_source
    FROM decision_months d
    LEFT JOIN risk_free r ON r.month = d.month
    LEFT JOIN tbill t ON t.month = d.month
),
filled AS (
    SELECT month, rf_known, known_source,
           last_value(rf_known IGNORE NULLS) OVER w AS rf,
           last_value(known_source IGNORE NULLS) OVER w AS last_source,
           last_value(CASE WHEN rf_known IS NOT NULL THEN month END IGNORE NULLS) OVER w AS last_month
    FROM known
    WINDOW w AS (ORDER BY month ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT month, rf,
       CASE WHEN rf_known IS NOT NULL THEN known_source
            WHEN rf IS NOT NULL THEN 'forward-filled ' || last_source || ' of ' || strftime(last_month, '%Y-%m')
            ELSE 'none' END AS source,
       rf_known
FROM filled;
