SELECT seq, symbol, open_time, open, high, low, close, volume, name, tick_size, rank FROM enrich_inner ORDER BY seq
