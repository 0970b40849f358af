-- Raw tables of the warehouse. Every observation keeps its source and when the job first saw it.
-- Re-ingesting the same data changes nothing (upserts keep ingested_at when the value is unchanged).

CREATE TABLE IF NOT EXISTS assets (
    asset        VARCHAR PRIMARY KEY,
    sector       VARCHAR NOT NULL,
    is_benchmark BOOLEAN NOT NULL,
    position     INTEGER NOT NULL          -- order of the universe
);

CREATE TABLE IF NOT EXISTS prices_daily (
    asset       VARCHAR   NOT NULL,
    date        DATE      NOT NULL,        -- trading day
    close       DOUBLE    NOT NULL,        -- split- and dividend-adjusted close: a total-return index
    source      VARCHAR   NOT NULL,        -- sample | snapshot | yahoo
    origin      VARCHAR   NOT NULL,        -- file or API the row came from
    ingested_at TIMESTAMP NOT NULL,
    PRIMARY KEY (asset, date)
);

CREATE TABLE IF NOT EXISTS series_meta (
    series      VARCHAR PRIMARY KEY,
    tcode       INTEGER NOT NULL,          -- FRED-MD transformation code 1..7
    market      BOOLEAN NOT NULL,          -- market data: publication lag = market lag (0)
    grp         VARCHAR,
    description VARCHAR
);

CREATE TABLE IF NOT EXISTS macro_observations (
    series          VARCHAR   NOT NULL,
    period          DATE      NOT NULL,    -- first day of the observed month
    value           DOUBLE,                -- level as published (transformations happen in views)
    vintage         VARCHAR   NOT NULL,    -- FRED-MD vintage YYYY-MM, 'alfred:<realtime_start>', 'latest', 'sample'
    vintage_release DATE,                  -- when that vintage was published (NULL: unknown)
    realtime_start  DATE,                  -- real publication date from ALFRED, when known
    source          VARCHAR   NOT NULL,    -- sample | snapshot | fred | fred-md
    origin          VARCHAR   NOT NULL,
    ingested_at     TIMESTAMP NOT NULL,
    PRIMARY KEY (series, period, vintage)
);

CREATE TABLE IF NOT EXISTS risk_free (
    month  DATE PRIMARY KEY,               -- first day of the month
    rf     DOUBLE NOT NULL,                -- risk-free return over the month, decimal
    source VARCHAR NOT NULL,
    origin VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS ingests (
    ingest_id    VARCHAR PRIMARY KEY,
    source       VARCHAR   NOT NULL,
    universe     VARCHAR   NOT NULL,
    started_at   TIMESTAMP NOT NULL,
    finished_at  TIMESTAMP NOT NULL,
    price_rows   BIGINT    NOT NULL,
    macro_rows   BIGINT    NOT NULL,
    changed_rows BIGINT    NOT NULL,
    fingerprint  VARCHAR   NOT NULL,       -- sha256 of the ingested content
    details      VARCHAR   NOT NULL        -- JSON: files, vintages, ranges, dropped series
);
