SELECT seq, symbol, open_time, open, high, low, close, volume FROM normalize_time ORDER BY seq
