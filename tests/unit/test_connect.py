"""Spark Connect plumbing that needs no server: URLs, the local server's parallelism."""

from __future__ import annotations

import os

import pytest

from regrow.orchestration.connect import _local_cores
from regrow.orchestration.spark import SparkServerError, remote_address, remote_url
from regrow.settings import SparkSettings


@pytest.mark.parametrize(
    ("master", "cores"),
    [("local", 1), ("local[3]", 3), ("local[2,4]", 2), ("local[*]", os.cpu_count()),
     ("spark://host:7077", None), ("local[x]", None)],
)  # fmt: skip
def test_the_local_servers_parallelism_follows_its_master(master, cores):
    assert _local_cores(master) == cores


def test_a_connect_url_gives_its_address_and_the_default_port():
    assert remote_address("sc://127.0.0.1:15010/;user_id=a") == ("127.0.0.1", 15010)
    assert remote_address("sc://spark.internal") == ("spark.internal", 15002)
    with pytest.raises(SparkServerError, match="not a Spark Connect URL"):
        remote_address("http://127.0.0.1:15002")


def test_params_win_over_the_environment_and_spark_submit_wins_over_both(monkeypatch):
    monkeypatch.setenv("SPARK_REMOTE", "sc://from-env:1")
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    assert remote_url(SparkSettings()) == "sc://from-env:1"
    assert remote_url(SparkSettings(remote="sc://from-params:2")) == "sc://from-params:2"
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "12345")  # inside spark-submit
    assert remote_url(SparkSettings(remote="sc://from-params:2")) is None
