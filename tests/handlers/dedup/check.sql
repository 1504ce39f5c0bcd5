SELECT seq, symbol, open_time, open, high, low, close, volume FROM dedup ORDER BY seq
