-- GENERATED from the artifact contract (job/artifacts.py) by job.query.store_views_sql(); do not edit.
-- Regenerate: .venv/bin/python -c "import job.query as q; q.write_store_views()"
--
-- Views over the COMMITTED artifacts of a store, for a plain DuckDB shell (what `rotation query` defines
-- for you, minus its checks). A file is committed when a month's runs/as_of=YYYY-MM/manifest.json lists
-- it; raw globs over weights/*/*/*.parquet also show crashed or superseded run_ids, these views do not.
-- Unlike `rotation query`, these views do NOT check sha256 and fail on a damaged manifest or file: run
-- `rotation verify` first when in doubt. A month with several files of a kind (stage commands merge into
-- the month's publication) shows each file's rows; `rotation query` keeps only the newest per model.
--
-- Usage (duckdb CLI or Python), after pointing DuckDB at the store:
--   SET VARIABLE store = 's3://my-bucket/rotation';          -- or a local folder: '/path/to/artifacts'
--   -- for S3: LOAD httpfs; CREATE SECRET (TYPE s3, KEY_ID '...', SECRET '...', REGION 'us-east-1',
--   --         ENDPOINT 'minio:9000', URL_STYLE 'path', USE_SSL false);   -- ENDPOINT only off AWS
--   .read sql/store_views.sql
--   SELECT * FROM weights WHERE as_of = (SELECT max(as_of) FROM committed_runs);
-- Every view reads the footers of all the store's parquet files (one glob, and a typed empty row set
-- UNION ALL BY NAME, so that a kind never published, such as the sweep without --sweep, gives an empty
-- view instead of an error); an empty store makes the views fail with "No files found". The sweep's
-- metric columns are only in `rotation query`'s sweep view.

CREATE OR REPLACE VIEW committed_runs AS
SELECT as_of, run_id, created_at
FROM read_json(getvariable('store') || '/runs/*/manifest.json',
               columns = {as_of: 'VARCHAR', run_id: 'VARCHAR', created_at: 'TIMESTAMPTZ'},
               hive_partitioning = false);

CREATE OR REPLACE VIEW committed_artifacts AS
SELECT m.as_of, split_part(a.path, '/', 1) AS kind, a.path, a.sha256, a.bytes,
       getvariable('store') || '/' || a.path AS url
FROM read_json(getvariable('store') || '/runs/*/manifest.json',
               columns = {as_of: 'VARCHAR', artifacts: 'STRUCT(path VARCHAR, bytes BIGINT, sha256 VARCHAR)[]'},
               hive_partitioning = false) AS m,
     unnest(m.artifacts) AS u(a);

-- next month's forecast of every model: one row per (model, asset)
CREATE OR REPLACE VIEW forecasts AS
SELECT as_of, run_id, "model", "decision_month", "target_month", "asset", "sector", "predicted", "validation_mae", "train_end", "model_fingerprint"
FROM (SELECT NULL::VARCHAR AS as_of, NULL::VARCHAR AS run_id,
               NULL::VARCHAR AS "model",
               NULL::VARCHAR AS "decision_month",
               NULL::VARCHAR AS "target_month",
               NULL::VARCHAR AS "asset",
               NULL::VARCHAR AS "sector",
               NULL::DOUBLE AS "predicted",
               NULL::DOUBLE AS "validation_mae",
               NULL::VARCHAR AS "train_end",
               NULL::VARCHAR AS "model_fingerprint"
      WHERE false
      UNION ALL BY NAME
      SELECT t.* FROM read_parquet(getvariable('store') || '/*/as_of=*/run_id=*/*.parquet',
                                   filename = true, hive_partitioning = true, union_by_name = true,
                                   hive_types = {'as_of': VARCHAR, 'run_id': VARCHAR}) AS t
      SEMI JOIN committed_artifacts AS c ON c.url = t.filename AND c.kind = 'forecasts');

-- next month's weights of every model: one row per (model, asset)
CREATE OR REPLACE VIEW weights AS
SELECT as_of, run_id, "model", "decision_month", "target_month", "asset", "sector", "predicted", "weight", "flag", "multiplier", "exposure", "capital_deployed", "mode"
FROM (SELECT NULL::VARCHAR AS as_of, NULL::VARCHAR AS run_id,
               NULL::VARCHAR AS "model",
               NULL::VARCHAR AS "decision_month",
               NULL::VARCHAR AS "target_month",
               NULL::VARCHAR AS "asset",
               NULL::VARCHAR AS "sector",
               NULL::DOUBLE AS "predicted",
               NULL::DOUBLE AS "weight",
               NULL::BOOLEAN AS "flag",
               NULL::DOUBLE AS "multiplier",
               NULL::DOUBLE AS "exposure",
               NULL::DOUBLE AS "capital_deployed",
               NULL::VARCHAR AS "mode"
      WHERE false
      UNION ALL BY NAME
      SELECT t.* FROM read_parquet(getvariable('store') || '/*/as_of=*/run_id=*/*.parquet',
                                   filename = true, hive_partitioning = true, union_by_name = true,
                                   hive_types = {'as_of': VARCHAR, 'run_id': VARCHAR}) AS t
      SEMI JOIN committed_artifacts AS c ON c.url = t.filename AND c.kind = 'weights');

-- walk-forward portfolio returns: one row per (model, decision month)
CREATE OR REPLACE VIEW backtest AS
SELECT as_of, run_id, "model", "decision_month", "target_month", "portfolio_return", "portfolio_return_net", "benchmark_return", "equal_weight_return", "capital_deployed", "gross_exposure", "turnover", "cost", "risk_free", "levered_assets"
FROM (SELECT NULL::VARCHAR AS as_of, NULL::VARCHAR AS run_id,
               NULL::VARCHAR AS "model",
               NULL::VARCHAR AS "decision_month",
               NULL::VARCHAR AS "target_month",
               NULL::DOUBLE AS "portfolio_return",
               NULL::DOUBLE AS "portfolio_return_net",
               NULL::DOUBLE AS "benchmark_return",
               NULL::DOUBLE AS "equal_weight_return",
               NULL::DOUBLE AS "capital_deployed",
               NULL::DOUBLE AS "gross_exposure",
               NULL::DOUBLE AS "turnover",
               NULL::DOUBLE AS "cost",
               NULL::DOUBLE AS "risk_free",
               NULL::BIGINT AS "levered_assets"
      WHERE false
      UNION ALL BY NAME
      SELECT t.* FROM read_parquet(getvariable('store') || '/*/as_of=*/run_id=*/*.parquet',
                                   filename = true, hive_partitioning = true, union_by_name = true,
                                   hive_types = {'as_of': VARCHAR, 'run_id': VARCHAR}) AS t
      SEMI JOIN committed_artifacts AS c ON c.url = t.filename AND c.kind = 'backtest');

-- walk-forward forecasts against realised returns (models and baselines): one row per (model, decision month, asset)
CREATE OR REPLACE VIEW backtest_forecasts AS
SELECT as_of, run_id, "model", "decision_month", "target_month", "asset", "predicted", "realised", "fit_month", "train_end"
FROM (SELECT NULL::VARCHAR AS as_of, NULL::VARCHAR AS run_id,
               NULL::VARCHAR AS "model",
               NULL::VARCHAR AS "decision_month",
               NULL::VARCHAR AS "target_month",
               NULL::VARCHAR AS "asset",
               NULL::DOUBLE AS "predicted",
               NULL::DOUBLE AS "realised",
               NULL::VARCHAR AS "fit_month",
               NULL::VARCHAR AS "train_end"
      WHERE false
      UNION ALL BY NAME
      SELECT t.* FROM read_parquet(getvariable('store') || '/*/as_of=*/run_id=*/*.parquet',
                                   filename = true, hive_partitioning = true, union_by_name = true,
                                   hive_types = {'as_of': VARCHAR, 'run_id': VARCHAR}) AS t
      SEMI JOIN committed_artifacts AS c ON c.url = t.filename AND c.kind = 'backtest_forecasts');

-- walk-forward weights: one row per (model, decision month, asset)
CREATE OR REPLACE VIEW backtest_weights AS
SELECT as_of, run_id, "model", "decision_month", "target_month", "asset", "weight", "flag", "multiplier", "exposure"
FROM (SELECT NULL::VARCHAR AS as_of, NULL::VARCHAR AS run_id,
               NULL::VARCHAR AS "model",
               NULL::VARCHAR AS "decision_month",
               NULL::VARCHAR AS "target_month",
               NULL::VARCHAR AS "asset",
               NULL::DOUBLE AS "weight",
               NULL::BOOLEAN AS "flag",
               NULL::DOUBLE AS "multiplier",
               NULL::DOUBLE AS "exposure"
      WHERE false
      UNION ALL BY NAME
      SELECT t.* FROM read_parquet(getvariable('store') || '/*/as_of=*/run_id=*/*.parquet',
                                   filename = true, hive_partitioning = true, union_by_name = true,
                                   hive_types = {'as_of': VARCHAR, 'run_id': VARCHAR}) AS t
      SEMI JOIN committed_artifacts AS c ON c.url = t.filename AND c.kind = 'backtest_weights');

-- the look-ahead audit: the walk-forward portfolio again at publication lag 0 (the original notebook's alignment, labelled look-ahead): one row per (model, decision month)
CREATE OR REPLACE VIEW lookahead_backtest AS
SELECT as_of, run_id, "model", "decision_month", "target_month", "portfolio_return", "portfolio_return_net", "benchmark_return", "equal_weight_return", "capital_deployed", "gross_exposure", "turnover", "cost", "risk_free", "levered_assets"
FROM (SELECT NULL::VARCHAR AS as_of, NULL::VARCHAR AS run_id,
               NULL::VARCHAR AS "model",
               NULL::VARCHAR AS "decision_month",
               NULL::VARCHAR AS "target_month",
               NULL::DOUBLE AS "portfolio_return",
               NULL::DOUBLE AS "portfolio_return_net",
               NULL::DOUBLE AS "benchmark_return",
               NULL::DOUBLE AS "equal_weight_return",
               NULL::DOUBLE AS "capital_deployed",
               NULL::DOUBLE AS "gross_exposure",
               NULL::DOUBLE AS "turnover",
               NULL::DOUBLE AS "cost",
               NULL::DOUBLE AS "risk_free",
               NULL::BIGINT AS "levered_assets"
      WHERE false
      UNION ALL BY NAME
      SELECT t.* FROM read_parquet(getvariable('store') || '/*/as_of=*/run_id=*/*.parquet',
                                   filename = true, hive_partitioning = true, union_by_name = true,
                                   hive_types = {'as_of': VARCHAR, 'run_id': VARCHAR}) AS t
      SEMI JOIN committed_artifacts AS c ON c.url = t.filename AND c.kind = 'lookahead_backtest');

-- performance and forecast-quality figures, one long table: one row per (section, model, period, metric)
CREATE OR REPLACE VIEW metrics AS
SELECT as_of, run_id, "section", "model", "period", "metric", "value", "value_text", "path"
FROM (SELECT NULL::VARCHAR AS as_of, NULL::VARCHAR AS run_id,
               NULL::VARCHAR AS "section",
               NULL::VARCHAR AS "model",
               NULL::VARCHAR AS "period",
               NULL::VARCHAR AS "metric",
               NULL::DOUBLE AS "value",
               NULL::VARCHAR AS "value_text",
               NULL::VARCHAR AS "path"
      WHERE false
      UNION ALL BY NAME
      SELECT t.* FROM read_parquet(getvariable('store') || '/*/as_of=*/run_id=*/*.parquet',
                                   filename = true, hive_partitioning = true, union_by_name = true,
                                   hive_types = {'as_of': VARCHAR, 'run_id': VARCHAR}) AS t
      SEMI JOIN committed_artifacts AS c ON c.url = t.filename AND c.kind = 'metrics');

-- strategy-parameter sweep on the walk-forward forecasts: one row per (model, threshold, factor, shrinkage)
CREATE OR REPLACE VIEW sweep AS
SELECT as_of, run_id, "model", "threshold", "factor", "shrinkage", "mode", "cost_bps", "start", "end"
FROM (SELECT NULL::VARCHAR AS as_of, NULL::VARCHAR AS run_id,
               NULL::VARCHAR AS "model",
               NULL::DOUBLE AS "threshold",
               NULL::DOUBLE AS "factor",
               NULL::DOUBLE AS "shrinkage",
               NULL::VARCHAR AS "mode",
               NULL::DOUBLE AS "cost_bps",
               NULL::VARCHAR AS "start",
               NULL::VARCHAR AS "end"
      WHERE false
      UNION ALL BY NAME
      SELECT t.* FROM read_parquet(getvariable('store') || '/*/as_of=*/run_id=*/*.parquet',
                                   filename = true, hive_partitioning = true, union_by_name = true,
                                   hive_types = {'as_of': VARCHAR, 'run_id': VARCHAR}) AS t
      SEMI JOIN committed_artifacts AS c ON c.url = t.filename AND c.kind = 'sweep');
