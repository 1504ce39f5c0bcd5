SELECT seq, uid, epoch_ms(ts) AS ts, CAST(day AS VARCHAR) AS day, amount, price, text FROM filter_dates ORDER BY seq
