"""The ``spark-submit`` task of regrow's DAGs (``airflow.spark_via: submit``): the Spark
provider's ``SparkSubmitOperator`` in the task's AWS access
(:class:`~regrow.orchestration.operators.AwsSparkSubmitOperator`), which first checks that
the standalone master of its Airflow connection answers.

Without the check, ``spark-submit`` to a master that is down starts a driver that retries
registering for a minute, logs "All masters are unresponsive! Giving up." and fails the task
with "Cannot execute: spark-submit ... Error code is: 1", naming neither the connection nor
the master. With it, the task fails at once with one line naming both (then retries as
configured), and no job has started: nothing is written.

Imported only when a DAG wires a ``spark-submit`` task (:func:`regrow.orchestration.dags.spark_job`).
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from airflow.exceptions import AirflowException

from regrow.orchestration.operators import AwsSparkSubmitOperator

_CONNECT_SECONDS = 5.0


def master_addresses(master: str) -> list[tuple[str, int]]:
    """``(host, port)`` of each master of a standalone URL ``spark://h1:p1[,h2:p2]`` (several
    with ZooKeeper HA); ``[]`` for any other master (``local[*]``, ``yarn``, ``k8s://...``)."""
    if not master.startswith("spark://"):
        return []
    addresses = []
    for part in master.removeprefix("spark://").split(","):
        parsed = urlsplit(f"spark://{part.strip()}")
        addresses.append((parsed.hostname or "", parsed.port or 7077))
    return addresses


def check_master(master: str, conn_id: str, timeout: float = _CONNECT_SECONDS) -> None:
    """Return when one master of ``master`` accepts a TCP connection (or it is not a
    standalone master).

    Raises:
        AirflowException: no master answers; the message names the address, the master
            URL and the Airflow connection (a retry may find the master back up).
    """
    addresses = master_addresses(master)
    for host, port in addresses:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return
        except OSError:
            continue
    if addresses:
        where = ", ".join(f"{host}:{port}" for host, port in addresses)
        raise AirflowException(
            f"no Spark master answers at {where} ({master}, the Airflow connection "
            f"{conn_id!r}): start the cluster's master, or point {conn_id!r} at a running "
            "one (nothing was submitted)"
        )


class SparkJobOperator(AwsSparkSubmitOperator):
    """``spark-submit`` that fails fast, naming its connection and master, when the
    standalone master it submits to does not answer."""

    def execute(self, context):
        # The master as the provider's hook resolves it from the connection (host, port and
        # conn type), so that the check and spark-submit agree; a throwaway hook, since
        # ``execute`` may still change ``conf`` before it builds its own.
        master = self._get_hook()._connection["master"]
        check_master(master, self._conn_id)
        self.log.info(
            "submitting %s to %s (connection %r)", self.application, master, self._conn_id
        )
        return super().execute(context)
