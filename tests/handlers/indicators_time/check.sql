SELECT seq, symbol, open_time, open, high, low, close, volume, sma4s, min3s, max3s, std5s, bb_lower, bb_mid, bb_upper, sma3 FROM indicators_time ORDER BY seq
