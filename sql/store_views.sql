-- Views over the COMMITTED runs of an artifact store, for a plain DuckDB shell (what `rotation query`
-- defines for you). A month's runs are committed when runs/as_of=YYYY-MM/manifest.json names them;
-- raw globs over weights/*/*/*.parquet also show crashed or superseded run_ids, these views do not.
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

CREATE OR REPLACE VIEW forecasts AS
SELECT f.* FROM read_parquet(getvariable('store') || '/forecasts/*/*/*.parquet', hive_partitioning = true,
                             union_by_name = true, hive_types = {'as_of': VARCHAR, 'run_id': VARCHAR}) AS f
SEMI JOIN committed_runs AS c ON c.as_of = f.as_of AND c.run_id = f.run_id;

CREATE OR REPLACE VIEW weights AS
SELECT w.* FROM read_parquet(getvariable('store') || '/weights/*/*/*.parquet', hive_partitioning = true,
                             union_by_name = true, hive_types = {'as_of': VARCHAR, 'run_id': VARCHAR}) AS w
SEMI JOIN committed_runs AS c ON c.as_of = w.as_of AND c.run_id = w.run_id;

CREATE OR REPLACE VIEW backtest AS
SELECT b.* FROM read_parquet(getvariable('store') || '/backtest/*/*/*.parquet', hive_partitioning = true,
                             union_by_name = true, hive_types = {'as_of': VARCHAR, 'run_id': VARCHAR}) AS b
SEMI JOIN committed_runs AS c ON c.as_of = b.as_of AND c.run_id = b.run_id;
