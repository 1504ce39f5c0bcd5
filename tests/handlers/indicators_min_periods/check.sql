SELECT seq, symbol, open_time, open, high, low, close, volume, ma20, sma5, ema5, min4, max4, std6, bb_lower, bb_mid, bb_upper, sma4s FROM indicators_min_periods ORDER BY seq
