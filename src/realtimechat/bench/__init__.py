"""`realtimechat bench`: throughput, latency, loss and duplicates, measured end to end."""
