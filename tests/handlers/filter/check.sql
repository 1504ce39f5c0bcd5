SELECT seq, symbol, open_time, open, high, low, close, volume FROM filter ORDER BY seq
