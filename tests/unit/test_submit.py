"""The spark-submit task's check of its standalone master (regrow.orchestration.submit):
real sockets on 127.0.0.1, a listening one and a closed one."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from airflow.exceptions import AirflowException

from regrow.orchestration.submit import check_master, master_addresses


@pytest.mark.parametrize(
    ("master", "addresses"),
    [
        ("spark://10.0.0.5:7077", [("10.0.0.5", 7077)]),
        ("spark://spark-master", [("spark-master", 7077)]),  # Spark's default port
        ("spark://m1:7077,m2:7078", [("m1", 7077), ("m2", 7078)]),  # ZooKeeper HA
        ("local[*]", []),
        ("yarn", []),
        ("k8s://https://api:6443", []),
    ],
)
def test_master_addresses(master, addresses):
    assert master_addresses(master) == addresses


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def closed() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        yield sock.getsockname()[1]


def test_a_master_that_answers_passes(listening, closed):
    check_master(f"spark://127.0.0.1:{listening}", "spark_default")
    # With HA, one master answering is enough.
    check_master(f"spark://127.0.0.1:{closed},127.0.0.1:{listening}", "spark_default")
    check_master("local[*]", "spark_default")  # not a standalone master: nothing to check


def test_a_master_that_is_down_is_named_with_its_connection(closed):
    master = f"spark://127.0.0.1:{closed}"
    with pytest.raises(AirflowException) as raised:
        check_master(master, "spark_cluster")
    assert str(raised.value) == (
        f"no Spark master answers at 127.0.0.1:{closed} ({master}, the Airflow connection "
        "'spark_cluster'): start the cluster's master, or point 'spark_cluster' at a running "
        "one (nothing was submitted)"
    )
