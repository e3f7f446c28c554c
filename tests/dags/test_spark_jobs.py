"""The Spark job task factory: ``airflow.spark_via`` chooses a task on the Spark Connect
server (no JVM start per task) or a ``SparkSubmitOperator`` (a JVM per task, a cluster)."""

from __future__ import annotations

import pytest

from regrow.orchestration import dags
from regrow.orchestration.spark import JVM_OPTIONS
from regrow.settings import PARAMS_ENV
from tests.conftest import write_params


@pytest.fixture
def via(tmp_path, monkeypatch):
    def use(mode: str) -> None:
        params = write_params(tmp_path, airflow={"spark_via": mode})
        monkeypatch.setenv(PARAMS_ENV, str(params))

    return use


def test_connect_runs_the_job_in_a_python_task_on_the_connect_connection(via):
    via("connect")
    task = dags.spark_job("ingest_events", "ingest.py")
    assert type(task).__name__ == "PythonOperator"
    assert task.op_kwargs == {"job": "ingest.py", "conn_id": "spark_connect_default"}
    assert task.op_args[:2] == ["--date", "{{ ds }}"]
    assert task.op_args[-2] == "--params" and task.op_args[-1].endswith("params.yaml")


def test_submit_runs_the_job_through_spark_submit_on_the_spark_connection(via):
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    via("submit")
    task = dags.spark_job("ingest_events", "ingest.py")
    # The provider's operator, checking its master first (regrow.orchestration.submit).
    assert isinstance(task, SparkSubmitOperator)
    assert type(task).__name__ == "SparkJobOperator"
    assert task.application.endswith("jobs/ingest.py")
    assert task._conn_id == "spark_default"
    assert task.application_args[:2] == ["--date", "{{ ds }}"]
    # The driver's JVM options reach spark-submit's command line (set later, in the job's
    # session, they would be ignored): UTC, and the JIT's settings.
    for key in ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions"):
        assert task.conf[key] == JVM_OPTIONS


def test_a_task_whose_connect_server_is_down_fails_at_once_naming_it(monkeypatch):
    from airflow.exceptions import AirflowException

    from regrow.orchestration.airflow_local import spark_connect_connection
    from regrow.orchestration.tasks import run_connect_job
    from tests.conftest import _free_port

    port = _free_port()
    monkeypatch.setenv(*spark_connect_connection("regrow_down", port))
    with pytest.raises(AirflowException, match=f"no Spark Connect server answers at 127.0.0.1:{port} "
                       "\\(Airflow connection 'regrow_down'\\)"):  # fmt: skip
        run_connect_job("ingest.py", ["--date", "2026-01-01"], "regrow_down")


def test_a_task_whose_connection_names_another_program_fails_at_once_naming_it(
    monkeypatch, web_server
):
    """The connection's port holds a web server, not Spark Connect: the task fails at once
    naming the address and the connection, not after minutes of gRPC retries."""
    from airflow.exceptions import AirflowException

    from regrow.orchestration.airflow_local import spark_connect_connection
    from regrow.orchestration.tasks import run_connect_job

    monkeypatch.setenv(*spark_connect_connection("regrow_other", web_server))
    with pytest.raises(AirflowException, match=f"what listens at 127.0.0.1:{web_server} "
                       "\\(Airflow connection 'regrow_other'\\) is no Spark Connect server"):  # fmt: skip
        run_connect_job("ingest.py", ["--date", "2026-01-01"], "regrow_other")
