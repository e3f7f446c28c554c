"""regrow's Airflow DAG files (a package only so that import-linter can check them)."""
