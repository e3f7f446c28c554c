"""Storage: the lakehouse, the one place that reads and writes Delta tables."""
