-- Forecast against realised next-month return, per model and asset, over the out-of-sample months of
-- the latest published month's walk-forward backtest (each forecast made only with data known then).
-- Run: rotation query --file sql/queries/forecast_vs_realised.sql
-- Uses backtest_forecasts(as_of, model, decision_month, target_month, asset, predicted, realised); the
-- models and the baselines (historical mean, persistence) alike. Rows without a realised return are left out.
SELECT as_of,
       model,
       asset,
       count(*) AS months,
       min(target_month) AS first_month,
       max(target_month) AS last_month,
       round(avg(predicted), 5) AS mean_predicted,
       round(avg(realised), 5) AS mean_realised,
       round(avg(abs(predicted - realised)), 5) AS mae,
       round(corr(predicted, realised), 3) AS correlation,
       round(avg(CASE WHEN sign(predicted) = sign(realised) THEN 1.0 ELSE 0.0 END), 3) AS sign_hit_rate
FROM backtest_forecasts
WHERE as_of = (SELECT max(as_of) FROM backtest_forecasts)
  AND realised IS NOT NULL
  AND predicted IS NOT NULL
GROUP BY as_of, model, asset
ORDER BY model, asset;
