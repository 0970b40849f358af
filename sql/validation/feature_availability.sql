-- Every macro value in the dataset's feature matrix, as the warehouse computes it at the lag the dataset
-- was built with: its latest period, when that observation became available (available_at), and when
-- the period would be available at the CONFIGURED publication lag (pseudo-real-time: the last weekday
-- of the period's month plus the lag). A dataset built with a shorter lag than configured uses periods
-- whose configured availability falls after the decision date: the original notebook's look-ahead.
SELECT strftime(f.month, '%Y-%m') AS month, f.decision_date, f.series,
       strftime(f.period, '%Y-%m') AS period, f.vintage, f.available_at,
       last_weekday(f.period + to_months(CASE WHEN m.market THEN $market_lag ELSE $configured_lag END))
           AS configured_available_at,
       f.value
FROM macro_features($dataset_lag, $market_lag, $max_stale) f
JOIN series_meta m USING (series)
WHERE f.month BETWEEN $first_month AND $last_month
  AND f.value IS NOT NULL
  AND list_contains($series, f.series)
ORDER BY f.month, f.series;
