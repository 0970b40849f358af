-- Model leaderboard over time: for every published month, the models ranked by out-of-sample Sharpe
-- (period 'full', before costs), with the benchmark (SPY) and equal weight alongside.
-- Run: rotation query --file sql/queries/model_leaderboard.sql
-- Uses metrics(as_of, section, model, period, metric, value): one row per (section, model, period, metric).
WITH wide AS (
    SELECT as_of,
           model,
           max(value) FILTER (WHERE metric = 'sharpe') AS sharpe,
           max(value) FILTER (WHERE metric = 'sortino') AS sortino,
           max(value) FILTER (WHERE metric = 'cagr') AS cagr,
           max(value) FILTER (WHERE metric = 'max_drawdown') AS max_drawdown,
           max(value) FILTER (WHERE metric = 'hit_rate') AS hit_rate
    FROM metrics
    WHERE period = 'full' AND section IN ('models', 'benchmark', 'equal_weight')
    GROUP BY as_of, model
)
SELECT as_of,
       rank() OVER (PARTITION BY as_of ORDER BY sharpe DESC NULLS LAST) AS rank,
       model,
       round(sharpe, 3) AS sharpe,
       round(sortino, 3) AS sortino,
       round(cagr, 4) AS cagr,
       round(max_drawdown, 4) AS max_drawdown,
       round(hit_rate, 3) AS hit_rate_vs_spy
FROM wide
ORDER BY as_of, rank, model;
