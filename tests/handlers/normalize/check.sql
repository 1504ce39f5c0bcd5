SELECT seq, symbol, open_time, open, high, low, close, volume, close_z, volume_z FROM normalize ORDER BY seq
