-- Leverage usage per model over the latest published month's walk-forward backtest: how often the rule
-- levers assets, how much capital it deploys, and which asset it levers most.
-- Run: rotation query --file sql/queries/leverage_usage.sql
-- Uses backtest(as_of, model, decision_month, levered_assets, capital_deployed, gross_exposure, turnover)
-- and backtest_weights(as_of, model, decision_month, asset, flag).
WITH latest AS (
    SELECT max(as_of) AS as_of FROM backtest
),
per_model AS (
    SELECT as_of,
           model,
           count(*) AS months,
           round(avg(CASE WHEN levered_assets > 0 THEN 1.0 ELSE 0.0 END), 3) AS share_months_levered,
           round(avg(levered_assets), 2) AS avg_levered_assets,
           round(avg(capital_deployed), 3) AS avg_capital_deployed,
           round(max(capital_deployed), 3) AS max_capital_deployed,
           round(avg(gross_exposure), 3) AS avg_gross_exposure,
           round(avg(turnover), 3) AS avg_turnover
    FROM backtest
    WHERE as_of = (SELECT as_of FROM latest)
    GROUP BY as_of, model
),
per_asset AS (
    SELECT model, asset, avg(CASE WHEN flag THEN 1.0 ELSE 0.0 END) AS share_levered
    FROM backtest_weights
    WHERE as_of = (SELECT as_of FROM latest)
    GROUP BY model, asset
),
top_asset AS (
    SELECT model,
           arg_max(asset, share_levered) AS most_levered_asset,
           round(max(share_levered), 3) AS most_levered_share
    FROM per_asset
    GROUP BY model
)
SELECT p.*, t.most_levered_asset, t.most_levered_share
FROM per_model AS p
LEFT JOIN top_asset AS t USING (model)
ORDER BY p.model;
