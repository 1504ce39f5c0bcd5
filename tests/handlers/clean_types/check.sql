SELECT seq, qty, price, flag, CAST(day AS VARCHAR) AS day, epoch_ms(ts) AS ts FROM clean_types ORDER BY seq
