"""regrow.orchestration.jars: the pinned JVM jars, fetched from a real HTTP server on
127.0.0.1 standing in for Maven Central, by the stdlib-only script the Dockerfile runs."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from regrow.orchestration import jars
from regrow.orchestration.spark import SparkJarsError, jvm_jars
from regrow.settings import ConfigError, SparkSettings
from tests.conftest import _free_port

SCRIPT = Path(jars.__file__)


@pytest.fixture
def maven(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A Maven layout served over HTTP on 127.0.0.1: (its URL, its folder)."""
    root = tmp_path / "repo"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


def fake(artifact: jars.Artifact, body: bytes) -> jars.Artifact:
    """``artifact`` as a small jar of ``body`` (its pinned SHA-1 and size made to match)."""
    return jars.Artifact(artifact.group, artifact.name, artifact.version,
                         hashlib.sha1(body).hexdigest(), len(body), artifact.role)  # fmt: skip


def publish(root: Path, artifact: jars.Artifact, body: bytes) -> None:
    path = root / artifact.url("").lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)


def test_fetch_checks_each_jar_and_then_works_offline(maven, tmp_path, monkeypatch):
    url, root = maven
    pinned = tuple(fake(a, f"jar of {a.name}".encode()) for a in jars.ARTIFACTS)
    monkeypatch.setattr(jars, "ARTIFACTS", pinned)
    for artifact in pinned:
        publish(root, artifact, f"jar of {artifact.name}".encode())
    dest = tmp_path / "jars"
    said: list[str] = []

    paths = jars.fetch(dest, repo=url, echo=said.append)

    assert [p.name for p in paths] == [a.file_name for a in pinned]
    assert all(
        p.read_bytes() == f"jar of {a.name}".encode() for p, a in zip(paths, pinned, strict=True)
    )
    assert len(said) == len(pinned) and all(os.stat(p).st_mode & 0o044 for p in paths)
    assert jars.present(jars.DELTA, dest) and jars.present(jars.S3A, dest)
    # Offline (nothing listens at the repo) with every jar there: nothing to fetch.
    again: list[str] = []
    assert jars.fetch(dest, repo=f"http://127.0.0.1:{_free_port()}", echo=again.append) == paths
    assert again == []
    # A jar of another size is fetched again; without the rest of its role, none is used.
    (dest / pinned[0].file_name).write_bytes(b"truncated")
    assert jars.present(jars.DELTA, dest) == [] and jars.present(jars.S3A, dest)


def test_a_jar_that_does_not_match_its_pin_is_refused_and_not_kept(maven, tmp_path, monkeypatch):
    url, root = maven
    artifact = fake(jars.ARTIFACTS[0], b"the real jar")
    monkeypatch.setattr(jars, "ARTIFACTS", (artifact,))
    publish(root, artifact, b"something else")
    dest = tmp_path / "jars"

    with pytest.raises(jars.JarsError, match=f"{artifact.coordinate} from {url}.* has SHA-1"):
        jars.fetch(dest, repo=url, echo=lambda _: None)
    assert list(dest.iterdir()) == []  # neither the jar nor its partial download


def test_an_unreachable_repository_names_the_artifact_and_the_fix(tmp_path):
    """The script the Dockerfile and `make setup` run, as a user meets it."""
    closed = f"http://127.0.0.1:{_free_port()}"
    env = {**os.environ, "REGROW_MAVEN_REPO": closed, "REGROW_JARS_DIR": str(tmp_path / "j")}

    done = subprocess.run([sys.executable, str(SCRIPT), "fetch"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip

    assert done.returncode == 1
    first = jars.ARTIFACTS[0]
    error = done.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"error: cannot fetch {first.coordinate}")
    assert closed in error[0] and "REGROW_MAVEN_REPO" in error[0] and "make setup" in error[0]
    assert "Traceback" not in done.stderr


def test_the_script_needs_nothing_but_the_standard_library(tmp_path):
    """The Dockerfile runs it before regrow is installed: no regrow import may be in it."""
    code = (
        "import sys, runpy; sys.argv = ['jars.py', 'path']; "
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')"
    )
    env = {**os.environ, "REGROW_JARS_DIR": str(tmp_path)}
    probe = f"import sys; sys.modules['regrow'] = None; {code}"  # importing regrow fails
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path)


def test_jars_of_another_spark_line_are_refused_naming_the_artifact(tmp_path, monkeypatch):
    with pytest.raises(jars.JarsError, match=r"delta-spark_4\.2_2\.13:4\.4\.0 is built for Spark "
                       r"4\.2 but pyspark 4\.3\.0 is installed.*make setup"):  # fmt: skip
        jars.check_spark("4.3.0")
    jars.check_spark("4.2.0")
    jars.check_spark(jars.installed_spark())  # the locked pyspark fits the pins

    # A session's conf on such an install: one ConfigError line, as the CLI prints it.
    monkeypatch.setattr(jars, "installed_spark", lambda: "4.3.0")
    with pytest.raises(SparkJarsError) as err:
        jvm_jars(SparkSettings())
    assert isinstance(err.value, ConfigError) and "pyspark 4.3.0" in str(err.value)
    # Without the jars there is nothing to refuse: delta-rs serves.
    monkeypatch.setenv("REGROW_JARS_DIR", str(tmp_path))
    assert jvm_jars(SparkSettings()) == {}
