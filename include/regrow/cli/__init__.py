"""The ``regrow`` command line: the same library calls as the DAGs and DVC stages.

``app`` is the Typer application; each module registers its commands on it.
"""

from regrow.cli import airflow, data, model, monitor, replay, spark, tables  # noqa: F401  (registers the commands)
from regrow.cli.common import app

__all__ = ["app"]
