-- Next month's weights per model and asset, from the latest published month.
-- Run: rotation query --file sql/queries/latest_weights.sql
-- Uses weights(as_of, run_id, model, decision_month, target_month, asset, weight, flag, multiplier).
-- A month's weights file may hold the whole backtest history: keep each model's last decision month.
WITH latest AS (
    SELECT max(as_of) AS as_of FROM runs
),
last_decision AS (
    SELECT model, max(decision_month) AS decision_month
    FROM weights
    WHERE as_of = (SELECT as_of FROM latest)
    GROUP BY model
)
SELECT w.as_of, w.run_id, w.model, w.target_month, w.asset,
       round(w.weight, 4) AS weight, w.flag AS levered, w.multiplier
FROM weights AS w
JOIN last_decision AS d ON d.model = w.model AND d.decision_month = w.decision_month
WHERE w.as_of = (SELECT as_of FROM latest)
ORDER BY w.model, w.weight DESC, w.asset;
