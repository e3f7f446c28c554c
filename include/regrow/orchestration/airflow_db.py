"""How Airflow's components connect to their SQLite metadata DB (imported by Airflow itself
through ``[database] sql_alchemy_connect_args``: keep this module free of imports).

SQLite has one writer at a time. A writer waits for the lock up to its busy timeout,
Python's default 5 s: four Airflow components, their tasks and an ``airflow`` CLI beside
them on a busy laptop wait longer than that, and a write that gives up fails with
"database is locked" — in the middle of ``airflow backfill create``, which is not one
transaction. A minute is long enough and still ends a real deadlock.
"""

SQLITE_CONNECT_ARGS = {"timeout": 60}
