SELECT seq, symbol, open_time, open, high, low, close, volume FROM clean ORDER BY seq
