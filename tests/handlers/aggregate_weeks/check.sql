SELECT CAST(day AS VARCHAR) AS day, n, sum_amount FROM aggregate_weeks ORDER BY day
