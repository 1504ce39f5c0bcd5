SELECT uid, epoch_ms(ts) AS ts, n, sum_amount, mean_price, first_price, count_distinct_amount FROM aggregate_calendar ORDER BY uid, ts
