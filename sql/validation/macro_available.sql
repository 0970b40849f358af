-- Every usable macro observation with its available_at at the dataset's publication lag (the output
-- of the macro_available table macro). Two rows with the same (series, period, available_at) would
-- make the value used at a decision date depend on row order.
SELECT series, strftime(period, '%Y-%m') AS period, available_at, vintage
FROM macro_available($dataset_lag, $market_lag);
