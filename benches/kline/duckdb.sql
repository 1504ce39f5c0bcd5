-- The DuckDB reference job (docs/benchmarks.md, "DuckDB reference job"), DuckDB side: the same
-- seven steps as klines.yaml in one statement. The driver replaces {input} (a read_csv path or
-- list) and {out} (the output directory).
COPY (
    WITH raw AS (
        -- 1. explicit schema; 2. malformed rows dropped (ignore_errors)
        SELECT * FROM read_csv({input},
            header = false, auto_detect = false, delim = ',', quote = '"', escape = '"',
            columns = {'open_time': 'BIGINT', 'open': 'DOUBLE', 'high': 'DOUBLE', 'low': 'DOUBLE',
                       'close': 'DOUBLE', 'volume': 'DOUBLE', 'close_time': 'BIGINT',
                       'quote_volume': 'DOUBLE', 'trades': 'BIGINT', 'taker_buy_base': 'DOUBLE',
                       'taker_buy_quote': 'DOUBLE', 'ignore': 'VARCHAR'},
            ignore_errors = true, filename = true)
        -- 2b. rows with an empty field dropped (Sluice's `not_null: "*"`)
        WHERE open_time IS NOT NULL AND open IS NOT NULL AND high IS NOT NULL AND low IS NOT NULL
          AND close IS NOT NULL AND volume IS NOT NULL AND close_time IS NOT NULL
          AND quote_volume IS NOT NULL AND trades IS NOT NULL AND taker_buy_base IS NOT NULL
          AND taker_buy_quote IS NOT NULL AND ignore IS NOT NULL
    ),
    named AS (
        -- 3. µs (values above 1e14) to ms; 5. symbol and date from the file name
        SELECT * EXCLUDE (filename) REPLACE (
                CASE WHEN open_time > 100000000000000 THEN open_time // 1000 ELSE open_time END AS open_time,
                CASE WHEN close_time > 100000000000000 THEN close_time // 1000 ELSE close_time END AS close_time),
            regexp_extract(filename, '([A-Za-z0-9]+)-1s-(\d{4}-\d{2}-\d{2})\.(csv|zip)$', 1) AS symbol,
            CAST(regexp_extract(filename, '([A-Za-z0-9]+)-1s-(\d{4}-\d{2}-\d{2})\.(csv|zip)$', 2) AS DATE) AS date
        FROM raw
    ),
    dedup AS (
        -- 4. one row per (symbol, open_time)
        SELECT * FROM named QUALIFY row_number() OVER (PARTITION BY symbol, open_time) = 1
    )
    -- 6. 20-row moving average of close per symbol by open_time, NULL until the window is full
    --    (Sluice's sma), continuous across files. The plain `avg(close) OVER w` (partial windows
    --    for each symbol's first 19 rows) is Sluice's sma with `min_periods: 1`.
    SELECT *, CASE WHEN count(close) OVER w = 20 THEN avg(close) OVER w END AS ma20
    FROM dedup
    WINDOW w AS (PARTITION BY symbol ORDER BY open_time ROWS BETWEEN 19 PRECEDING AND CURRENT ROW)
)
-- 7. Parquet partitioned by symbol and date, zstd
TO '{out}' (FORMAT parquet, PARTITION_BY (symbol, date), COMPRESSION zstd);
