-- The scoreboard of every published month: every model and baseline scored on the same out-of-sample
-- rows (the decision months and assets all of them predict), ordered by MAE. See README "Scoreboard".
-- Run: rotation query --file sql/queries/scoreboard.sql
-- Uses metrics(as_of, section, model, period, metric, value, value_text): section 'scoreboard', period 'common'.
SELECT as_of,
       model,
       max(value_text) FILTER (WHERE metric = 'kind') AS kind,
       CAST(max(value) FILTER (WHERE metric = 'mae_rank') AS INTEGER) AS mae_rank,
       round(max(value) FILTER (WHERE metric = 'mae'), 5) AS mae,
       round(max(value) FILTER (WHERE metric = 'rank_ic_mean'), 4) AS rank_ic,
       round(max(value) FILTER (WHERE metric = 'rank_ic_t_newey_west'), 2) AS rank_ic_t_nw,
       round(max(value) FILTER (WHERE metric = 'rank_ic_p_newey_west'), 3) AS rank_ic_p_nw,
       round(max(value) FILTER (WHERE metric = 'sign_hit_rate'), 3) AS sign_hit_rate,
       round(max(value) FILTER (WHERE metric = 'rank_hit_rate'), 3) AS rank_hit_rate,
       round(max(value) FILTER (WHERE metric = 'mae_ratio_vs_historical_mean'), 3) AS mae_vs_historical_mean,
       round(max(value) FILTER (WHERE metric = 'mae_dm_p_vs_historical_mean'), 3) AS dm_p_vs_historical_mean
FROM metrics
WHERE "section" = 'scoreboard' AND "period" = 'common'
GROUP BY as_of, model
ORDER BY as_of, mae_rank, model;
