"""How a ``regrow`` command fails: one line per problem on stderr (what, where, the fix)
and exit code 1, never a traceback unless ``--debug`` (or ``$REGROW_DEBUG=1``) asks.

Every command runs inside :class:`Commands`, the root group, which turns whatever a
command raises into that line: a command has no ``try``/``except`` of its own to forget.
The library's own errors (every exception class defined in ``regrow``) carry a message
written for the user and are printed as they are; a store that cannot be reached is named
with its settings; anything else is a bug, reported as such.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

# Set by the root callback for the command being run (``--debug`` / ``$REGROW_DEBUG``).
_debug = False
# Longest part of a foreign exception's message shown (Spark's run to pages).
_MAX_FOREIGN = 300
# Modules whose errors mean a store (S3, a local path) could not be used.
_STORAGE_MODULES = ("botocore", "aiobotocore", "s3fs", "deltalake", "pyarrow", "fsspec")


def set_debug(debug: bool) -> None:
    global _debug
    _debug = debug


def debugging() -> bool:
    """Whether ``--debug`` is on: tracebacks, regrow's INFO log, Spark's log on stderr."""
    return _debug


def echo_error(message: str) -> None:
    """``error: <message>`` in red on stderr."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= _MAX_FOREIGN else line[: _MAX_FOREIGN - 3] + "..."


def explain(err: BaseException) -> str:
    """The line a user reads for ``err``."""
    from regrow.storage.options import unreachable_cause

    if type(err).__module__.split(".")[0] == "regrow":
        return str(err).strip()  # written for the user where it was raised
    module = type(err).__module__.split(".")[0]
    if isinstance(err, OSError) or module in _STORAGE_MODULES:
        cause = unreachable_cause(err)
        if cause:
            return (
                f"storage cannot be used: {cause} ({_first_line(err)}): check landing.path, "
                "lakehouse.root, lakehouse.storage_options, $AWS_ENDPOINT_URL and the AWS "
                "credentials"
            )
    if isinstance(err, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return f"{err.strerror or type(err).__name__}: {err.filename or _first_line(err)}"
    return (
        f"unexpected error ({type(err).__name__}: {_first_line(err)}); rerun with --debug "
        "for the trace"
    )


class Commands(TyperGroup):
    """The root group of ``regrow``: a command's exception becomes :func:`explain`'s line
    and exit code 1 (``--debug`` lets it through with its traceback)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):  # exit codes, usage errors
            raise
        except Exception as err:
            if debugging():
                raise
            echo_error(explain(err))
            raise typer.Exit(code=1) from None
