SELECT seq, symbol, open_time, open, high, low, close, volume, mid, sym, range_bp, up, tag, t_s FROM derive ORDER BY seq
