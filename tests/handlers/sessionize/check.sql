SELECT seq, symbol, open_time, open, high, low, close, volume, session_start, session_event FROM sessionize ORDER BY seq
