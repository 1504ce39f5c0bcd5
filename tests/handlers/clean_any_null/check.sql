SELECT seq, symbol, open_time, open, high, low, close, volume FROM clean_any_null ORDER BY seq
