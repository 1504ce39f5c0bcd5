SELECT seq, symbol, open_time, open, high, low, close, volume, symbol_name, tick_size FROM enrich ORDER BY seq
