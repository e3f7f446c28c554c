"""The retrain policy: from a day's monitoring to one recorded decision (``rules`` on plain
facts, ``daily`` reading and writing the tables)."""
