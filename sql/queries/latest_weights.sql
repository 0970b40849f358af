-- Next month's weights per model and asset, from the latest month whose weights are published.
-- Run: rotation query --file sql/queries/latest_weights.sql
-- Uses weights(as_of, run_id, model, decision_month, target_month, asset, sector, predicted, weight, flag,
-- multiplier, exposure, capital_deployed): one row per (model, asset) for target_month = as_of + 1.
-- A month damaged beyond reading is left out of the views, so this shows the latest good month.
SELECT as_of, run_id, model, decision_month, target_month, asset, sector,
       round(predicted, 5) AS predicted,
       round(weight, 4) AS weight,
       flag AS levered,
       multiplier,
       round(capital_deployed, 3) AS capital_deployed
FROM weights
WHERE as_of = (SELECT max(as_of) FROM weights)
ORDER BY model, weight DESC, asset;
