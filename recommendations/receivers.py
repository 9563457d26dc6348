"""Signal receivers: they only queue work, after the transaction commits."""
