"""The command line: `regrow --help`."""

from regrow.cli.app import app

__all__ = ["app"]
