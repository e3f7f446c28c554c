"""The lakehouse's errors: every table operation that cannot be done as asked raises one."""

from __future__ import annotations


class LakehouseError(RuntimeError):
    """A table operation that cannot be done as asked."""


class TableNotFoundError(LakehouseError):
    pass


class MissingPartitionError(LakehouseError):
    """A job needs a partition of an upstream table that is not there (not built yet, or empty)."""


class SchemaChangeError(LakehouseError):
    """A write whose column types differ from the table's (only additive changes merge)."""


class StorageUnreachableError(LakehouseError):
    """S3 (or another store) cannot be reached, refuses the credentials, or lacks the
    bucket: the message names the URI, the endpoint and the setting to fix."""
