SELECT seq, symbol, open_time, open, high, low, close, volume, sma5, ema5, min4, max4, std6, rsi6, bb_lower, bb_mid, bb_upper, ret1, lret3 FROM indicators ORDER BY seq
