"""Every DAG file parses bare and follows the project's Airflow idioms.

In the style of Astronomer's ``test_dag_example.py``: the DagBag is filled with the lookups a
DAG must not do at import time (Variables, connections, landing files) patched to fail, and
each check is parametrized by file so that a failure names the file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from airflow.dag_processing.dagbag import DagBag  # after conftest.py set AIRFLOW_HOME
from airflow.sdk import BaseHook, Connection, Variable

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags"
DAG_FILES = sorted(p for p in DAGS_FOLDER.glob("*.py") if not p.name.startswith("_"))
# Importing any of these at parse time slows every DAG processor loop by seconds.
HEAVY_MODULES = ("pyspark", "xgboost", "mlflow", "great_expectations")


class TopLevelLookupError(RuntimeError):
    """A DAG file did I/O at import time."""


def _refuse(what: str):
    def refuse(*args, **kwargs):
        raise TopLevelLookupError(f"{what}{args} at DAG parse time: move it into a task")

    return refuse


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("REGROW_PARAMS", str(REPO / "params.yaml"))
        with (
            mock.patch.object(Variable, "get", _refuse("Variable.get")),
            mock.patch.object(Connection, "get", _refuse("Connection.get")),
            mock.patch.object(BaseHook, "get_connection", _refuse("BaseHook.get_connection")),
            mock.patch("regrow.data.landing.find_files", _refuse("landing.find_files")),
        ):
            return DagBag(dag_folder=DAGS_FOLDER)


def _dags_of(dagbag: DagBag, dag_file: Path):
    dags = [d for d in dagbag.dags.values() if Path(d.fileloc).resolve() == dag_file]
    assert dags, f"{dag_file.name} defines no DAG"
    return dags


def test_dags_folder_has_dags():
    assert DAG_FILES, f"no DAG file in {DAGS_FOLDER}"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_no_import_errors(dagbag: DagBag, dag_file: Path):
    errors = {Path(f).name: e for f, e in dagbag.import_errors.items()}
    assert dag_file.name not in errors, (
        f"{dag_file.name} failed to import:\n{errors[dag_file.name]}"
    )


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_id_is_the_file_stem(dagbag: DagBag, dag_file: Path):
    assert [d.dag_id for d in _dags_of(dagbag, dag_file)] == [dag_file.stem]


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_tags_and_docs_present(dagbag: DagBag, dag_file: Path):
    for dag in _dags_of(dagbag, dag_file):
        assert dag.tags, f"{dag.dag_id} has no tags"
        assert dag.doc_md and dag.doc_md.strip(), (
            f"{dag.dag_id} has no doc_md (pass doc_md=__doc__)"
        )


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_retries_with_backoff(dagbag: DagBag, dag_file: Path):
    for dag in _dags_of(dagbag, dag_file):
        for task in dag.tasks:
            assert task.retries >= 2, f"{dag.dag_id}.{task.task_id}: retries={task.retries} < 2"
            assert task.retry_exponential_backoff, f"{dag.dag_id}.{task.task_id}: no retry backoff"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_schedule_is_deliberate(dagbag: DagBag, dag_file: Path):
    for dag in _dags_of(dagbag, dag_file):
        assert dag.start_date is not None, f"{dag.dag_id} has no start_date"
        assert dag.start_date.utcoffset() == dt.timedelta(0), f"{dag.dag_id}: start_date not UTC"
        assert str(dag.timezone.name) == "UTC", f"{dag.dag_id}: timezone {dag.timezone}"
        assert dag.max_active_runs >= 1
        assert isinstance(dag.catchup, bool)


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_params_are_typed_and_described(dagbag: DagBag, dag_file: Path):
    """Run-time switches show in the trigger form with a title, a description and a type."""
    for dag in _dags_of(dagbag, dag_file):
        for name in dag.params:
            param = dag.params.get_param(name)
            where = f"{dag.dag_id} param {name!r}"
            assert param.schema.get("type"), f"{where} has no type"
            assert param.schema.get("title"), f"{where} has no title"
            assert param.description, f"{where} has no description"
            param.resolve()  # its default passes its own schema


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_no_heavy_imports_at_parse_time(dag_file: Path, tmp_path: Path):
    """Parse the file alone in a fresh interpreter and list the heavy modules it pulled in."""
    probe = (
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(dag_file)!r})\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY_MODULES!r})\n"
        "print(json.dumps({'errors': {k: str(v) for k, v in bag.import_errors.items()},"
        " 'dags': sorted(bag.dag_ids), 'heavy': heavy}))\n"
    )
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "REGROW_PARAMS": str(REPO / "params.yaml"),
    }
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert not report["errors"], report["errors"]
    assert report["dags"] == [dag_file.stem]
    heavy_roots = sorted({m.split(".")[0] for m in report["heavy"]})
    assert not heavy_roots, f"{dag_file.name} imports {heavy_roots} at parse time"
