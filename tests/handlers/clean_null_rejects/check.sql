SELECT seq, symbol, open_time, open, high, low, close, volume FROM clean_null_rejects ORDER BY seq
