-- Forecast against realised next-month return, per model and sector (asset), over the out-of-sample
-- months of the latest published run (walk-forward forecasts: each made only with data known then).
-- Run: rotation query --file sql/queries/forecast_vs_realised.sql
-- Uses forecasts(as_of, model, decision_month, asset, predicted, realised); rows without a realised
-- return yet (next month's live forecast) are left out.
SELECT model,
       asset,
       count(*) AS months,
       round(avg(predicted), 5) AS mean_predicted,
       round(avg(realised), 5) AS mean_realised,
       round(avg(abs(predicted - realised)), 5) AS mae,
       round(corr(predicted, realised), 3) AS correlation,
       round(avg(CASE WHEN sign(predicted) = sign(realised) THEN 1.0 ELSE 0.0 END), 3) AS sign_hit_rate
FROM forecasts
WHERE as_of = (SELECT max(as_of) FROM runs)
  AND realised IS NOT NULL
  AND predicted IS NOT NULL
GROUP BY model, asset
ORDER BY model, asset;
