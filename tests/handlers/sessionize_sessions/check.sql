SELECT symbol, session_start, session_end, events, duration FROM sessionize_sessions ORDER BY symbol, session_start
