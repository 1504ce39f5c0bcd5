"""What the Spark and Ray contenders share: the kline files' columns and name pattern (the
pipeline's `format.csv.columns` and `fields:` in benches/kline/klines.yaml)."""

COLUMNS = ["open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
           "trades", "taker_buy_base", "taker_buy_quote", "ignore"]
INTS = {"open_time", "close_time", "trades"}
NAME = r"([A-Za-z0-9]+)-1s-(\d{4}-\d{2}-\d{2})\.csv$"
