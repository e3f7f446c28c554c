"""Orchestration: the Spark session, the job runner, the DAG files' helpers and the local
Airflow runner."""
