SELECT symbol, open_time, open, high, low, close, volume, bars FROM resample ORDER BY symbol, open_time
