-- Daily adjusted closes of the universe over the validation window (from the month before the first
-- decision month, whose close the first return needs, to the end of the as-of month).
SELECT p.asset, strftime(p.date, '%Y-%m-%d') AS date, p.close
FROM prices_daily p JOIN assets a USING (asset)
WHERE p.date >= $window_start AND p.date <= $as_of_end
ORDER BY a.position, p.date;
