"""The DAG tests parse dags/ in-process. Airflow reads its config when first imported, and
this conftest is imported before the test modules: point it at a throwaway home, never
~/airflow, one per xdist worker so that two workers never write the same airflow.cfg."""

import os
import tempfile
from pathlib import Path

_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
os.environ.setdefault(
    "AIRFLOW_HOME", str(Path(tempfile.gettempdir()) / f"regrow-dagbag-home-{_WORKER}")
)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
