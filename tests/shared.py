"""What several test files use the same way, made once per test session and shared by the
xdist workers: the Spark Connect server, and data that files build alike.

The process that runs pytest (xdist's controller, or the only process with ``-n 0``)
creates the session's shared directory before the workers start, so they inherit its
path (:data:`SHARED_DIR`), and removes it at the end, after stopping the server. Inside
it, a file lock makes the first worker to ask build a thing while the others wait for it."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

SHARED_DIR = "REGROW_TEST_SHARED_DIR"
DONE = ".built"
CONNECT = "spark_connect"


def open_session() -> bool:
    """Create the shared directory unless a controlling process did; True if this
    process owns it (and must call :func:`close_session`)."""
    if os.environ.get(SHARED_DIR):
        return False
    os.environ[SHARED_DIR] = tempfile.mkdtemp(prefix="regrow-tests-")
    return True


def close_session() -> None:
    """Stop the shared Spark Connect server, if one was started, and remove the directory."""
    directory = shared_dir()
    params = directory / CONNECT / "params.yaml"
    try:
        if params.exists():
            from regrow.orchestration import connect
            from regrow.settings import load_settings

            connect.stop(load_settings(params))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def shared_dir() -> Path:
    return Path(os.environ[SHARED_DIR])


@contextmanager
def locked(name: str) -> Iterator[Path]:
    """An exclusive lock, across processes, on the shared ``name``; yields its path."""
    path = shared_dir() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(f"{path.name}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def built_once(name: str, build: Callable[[Path], None]) -> Path:
    """``build(directory)`` once per test session; returns the directory. A build that
    failed leaves no mark, so the next worker that asks builds it again (and fails the
    same way, in its own test)."""
    with locked(name) as directory:
        if not (directory / DONE).exists():
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir()
            build(directory)
            (directory / DONE).touch()
    return directory
