SELECT symbol, open_time, n, sum_volume, mean_close, min_low, max_high, first_open, last_close, count_distinct_close, n_close FROM aggregate ORDER BY symbol, open_time
