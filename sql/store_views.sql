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
-- A kind with no file yet (an empty store) makes its view fail with "No files found".

CREATE OR REPLACE VIEW committed_runs AS
SELECT as_of, run_id, created_at
FROM read_json(getvariable('store') || '/runs/*/manifest.json',
               columns = {as_of: 'VARCHAR', run_id: 'VARCHAR', created_at: 'TIMESTAMPTZ'},
               hive_partitioning = false);

CREATE OR REPLACE VIEW committed_artifacts AS
SELECT m.as_of, a.path, a.sha256, a.bytes, getvariable('store') || '/' || a.path AS url
FROM read_json(getvariable('store') || '/runs/*/manifest.json',
               columns = {as_of: 'VARCHAR', artifacts: 'STRUCT(path VARCHAR, bytes BIGINT, sha256 VARCHAR)[]'},
               hive_partitioning = false) AS m,
     unnest(m.artifacts) AS u(a);

-- next month's forecast of every model: one row per (model, asset)
CREATE OR REPLACE VIEW forecasts AS
SELECT t.as_of, t.run_id,
       t."model"::VARCHAR AS "model",
       t."decision_month"::VARCHAR AS "decision_month",
       t."target_month"::VARCHAR AS "target_month",
       t."asset"::VARCHAR AS "asset",
       t."sector"::VARCHAR AS "sector",
       t."predicted"::DOUBLE AS "predicted",
       t."validation_mae"::DOUBLE AS "validation_mae",
       t."train_end"::VARCHAR AS "train_end",
       t."model_fingerprint"::VARCHAR AS "model_fingerprint"
FROM read_parquet(getvariable('store') || '/forecasts/*/*/*.parquet', filename = true,
                  hive_partitioning = true, union_by_name = true,
                  hive_types = {'as_of': VARCHAR, 'run_id': VARCHAR}) AS t
SEMI JOIN committed_artifacts AS c ON c.url = t.filename;

-- next month's weights of every model: one row per (model, asset)
CREATE OR REPLACE VIEW weights AS
SELECT t.as_of, t.run_id,
       t."model"::VARCHAR AS "model",
       t."decision_month"::VARCHAR AS "decision_month",
       t."target_month"::VARCHAR AS "target_month",
       t."asset"::VARCHAR AS "asset",
       t."sector"::VARCHAR AS "sector",
       t."predicted"::DOUBLE AS "predicted",
       t."weight"::DOUBLE AS "weight",
       t."flag"::BOOLEAN AS "flag",
       t."multiplier"::DOUBLE AS "multiplier",
       t."exposure"::DOUBLE AS "exposure",
       t."capital_deployed"::DOUBLE AS "capital_deployed",
       t."mode"::VARCHAR AS "mode"
FROM read_parquet(getvariable('store') || '/weights/*/*/*.parquet', filename = true,
                  hive_partitioning = true, union_by_name = true,
                  hive_types = {'as_of': VARCHAR, 'run_id': VARCHAR}) AS t
SEMI JOIN committed_artifacts AS c ON c.url = t.filename;

-- walk-forward portfolio returns: one row per (model, decision month)
CREATE OR REPLACE VIEW backtest AS
SELECT t.as_of, t.run_id,
       t."model"::VARCHAR AS "model",
       t."decision_month"::VARCHAR AS "decision_month",
       t."target_month"::VARCHAR AS "target_month",
       t."portfolio_return"::DOUBLE AS "portfolio_return",
       t."portfolio_return_net"::DOUBLE AS "portfolio_return_net",
       t."benchmark_return"::DOUBLE AS "benchmark_return",
       t."equal_weight_return"::DOUBLE AS "equal_weight_return",
       t."capital_deployed"::DOUBLE AS "capital_deployed",
       t."gross_exposure"::DOUBLE AS "gross_exposure",
       t."turnover"::DOUBLE AS "turnover",
       t."cost"::DOUBLE AS "cost",
       t."risk_free"::DOUBLE AS "risk_free",
       t."levered_assets"::BIGINT AS "levered_assets"
FROM read_parquet(getvariable('store') || '/backtest/*/*/*.parquet', filename = true,
                  hive_partitioning = true, union_by_name = true,
                  hive_types = {'as_of': VARCHAR, 'run_id': VARCHAR}) AS t
SEMI JOIN committed_artifacts AS c ON c.url = t.filename;

-- walk-forward forecasts against realised returns (models and baselines): one row per (model, decision month, asset)
CREATE OR REPLACE VIEW backtest_forecasts AS
SELECT t.as_of, t.run_id,
       t."model"::VARCHAR AS "model",
       t."decision_month"::VARCHAR AS "decision_month",
       t."target_month"::VARCHAR AS "target_month",
       t."asset"::VARCHAR AS "asset",
       t."predicted"::DOUBLE AS "predicted",
       t."realised"::DOUBLE AS "realised",
       t."fit_month"::VARCHAR AS "fit_month",
       t."train_end"::VARCHAR AS "train_end"
FROM read_parquet(getvariable('store') || '/backtest_forecasts/*/*/*.parquet', filename = true,
                  hive_partitioning = true, union_by_name = true,
                  hive_types = {'as_of': VARCHAR, 'run_id': VARCHAR}) AS t
SEMI JOIN committed_artifacts AS c ON c.url = t.filename;

-- walk-forward weights: one row per (model, decision month, asset)
CREATE OR REPLACE VIEW backtest_weights AS
SELECT t.as_of, t.run_id,
       t."model"::VARCHAR AS "model",
       t."decision_month"::VARCHAR AS "decision_month",
       t."target_month"::VARCHAR AS "target_month",
       t."asset"::VARCHAR AS "asset",
       t."weight"::DOUBLE AS "weight",
       t."flag"::BOOLEAN AS "flag",
       t."multiplier"::DOUBLE AS "multiplier",
       t."exposure"::DOUBLE AS "exposure"
FROM read_parquet(getvariable('store') || '/backtest_weights/*/*/*.parquet', filename = true,
                  hive_partitioning = true, union_by_name = true,
                  hive_types = {'as_of': VARCHAR, 'run_id': VARCHAR}) AS t
SEMI JOIN committed_artifacts AS c ON c.url = t.filename;

-- performance and forecast-quality figures, one long table: one row per (section, model, period, metric)
CREATE OR REPLACE VIEW metrics AS
SELECT t.as_of, t.run_id,
       t."section"::VARCHAR AS "section",
       t."model"::VARCHAR AS "model",
       t."period"::VARCHAR AS "period",
       t."metric"::VARCHAR AS "metric",
       t."value"::DOUBLE AS "value",
       t."value_text"::VARCHAR AS "value_text",
       t."path"::VARCHAR AS "path"
FROM read_parquet(getvariable('store') || '/metrics/*/*/*.parquet', filename = true,
                  hive_partitioning = true, union_by_name = true,
                  hive_types = {'as_of': VARCHAR, 'run_id': VARCHAR}) AS t
SEMI JOIN committed_artifacts AS c ON c.url = t.filename;

-- strategy-parameter sweep on the walk-forward forecasts: one row per (model, threshold, factor, shrinkage)
CREATE OR REPLACE VIEW sweep AS
SELECT t.as_of, t.run_id,
       t."model"::VARCHAR AS "model",
       t."threshold"::DOUBLE AS "threshold",
       t."factor"::DOUBLE AS "factor",
       t."shrinkage"::DOUBLE AS "shrinkage",
       t."mode"::VARCHAR AS "mode",
       t."cost_bps"::DOUBLE AS "cost_bps",
       t."start"::VARCHAR AS "start",
       t."end"::VARCHAR AS "end",
       t.* EXCLUDE ("as_of", "run_id", "filename", "model", "threshold", "factor", "shrinkage", "mode", "cost_bps", "start", "end")
FROM read_parquet(getvariable('store') || '/sweep/*/*/*.parquet', filename = true,
                  hive_partitioning = true, union_by_name = true,
                  hive_types = {'as_of': VARCHAR, 'run_id': VARCHAR}) AS t
SEMI JOIN committed_artifacts AS c ON c.url = t.filename;
