"""Where the tables are: storage options for delta-rs and Spark tasks, and the filesystem
of a table URI (local or S3), all from one resolution of the S3 endpoint and region; with
timeouts that fail in seconds, and the one line that names an S3 store that cannot be
used (:func:`reaching`)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from regrow.storage.errors import StorageUnreachableError

# How long S3 may take before regrow gives up on it: an endpoint that refuses or does not
# answer fails a command in seconds, naming the endpoint, instead of after object_store's
# default of 10 retries within 3 minutes. ``lakehouse.storage_options`` overrides each.
FAIL_FAST = {"connect_timeout": "5s", "max_retries": "2", "retry_timeout": "15s"}
_CONNECT_SECONDS, _ATTEMPTS = 5, 3


def s3_options(options: Mapping[str, str]) -> dict[str, str]:
    """``options`` completed from the environment for S3: the endpoint and the region
    (a value in ``options`` wins over the environment's), and :data:`FAIL_FAST`'s
    timeouts and retries unless ``options`` sets them."""
    resolved = {**FAIL_FAST, **options}
    endpoint = resolved.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL", "")
    if endpoint.startswith("http://"):
        # object_store refuses plain HTTP unless told (a local S3 server, e.g. moto).
        resolved.setdefault("AWS_ALLOW_HTTP", "true")
    if endpoint:
        resolved["AWS_ENDPOINT_URL"] = endpoint
    region = (
        resolved.get("AWS_REGION")
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
    )
    if region:
        resolved["AWS_REGION"] = region
    return resolved


def storage_options(configured: Mapping[str, str], root: str) -> dict[str, str]:
    """delta-rs storage options: params.yaml's non-secret ones over the environment's."""
    return s3_options(configured) if root.startswith("s3://") else dict(configured)


def task_storage_options(configured: Mapping[str, str], root: str) -> dict[str, str]:
    """Storage options shipped to Spark tasks: the driver's, plus the AWS credentials of
    the driver's environment when it has them. Python workers inherit the environment
    of the JVM, which may predate those variables; without them in the environment,
    tasks fall back to their own credential chain (instance role, profile)."""
    options = storage_options(configured, root)
    if root.startswith("s3://"):
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            if os.environ.get(key):
                options.setdefault(key, os.environ[key])
    return options


def s3a_conf(options: Mapping[str, str]) -> dict[str, str]:
    """Hadoop S3A settings (the delta-spark engine) from delta-rs storage options and the
    environment: the same endpoint, region and credentials reach both engines."""
    resolved = s3_options(options)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if os.environ.get(key):
            resolved.setdefault(key, os.environ[key])
    conf: dict[str, str] = {}
    if endpoint := resolved.get("AWS_ENDPOINT_URL"):
        conf["fs.s3a.endpoint"] = endpoint
        conf["fs.s3a.path.style.access"] = "true"  # a local server has no bucket subdomains
        conf["fs.s3a.connection.ssl.enabled"] = str(endpoint.startswith("https://")).lower()
    if region := resolved.get("AWS_REGION"):
        conf["fs.s3a.endpoint.region"] = region
    if resolved.get("AWS_ACCESS_KEY_ID"):
        conf["fs.s3a.access.key"] = resolved["AWS_ACCESS_KEY_ID"]
        conf["fs.s3a.secret.key"] = resolved.get("AWS_SECRET_ACCESS_KEY", "")
        provider = "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
        if resolved.get("AWS_SESSION_TOKEN"):
            conf["fs.s3a.session.token"] = resolved["AWS_SESSION_TOKEN"]
            provider = "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider"
        conf["fs.s3a.aws.credentials.provider"] = provider
    return conf


def arrow_fs(uri: str, storage_options: Mapping[str, str]):
    """A pyarrow filesystem and the path inside it (local or S3)."""
    from pyarrow import fs as pafs

    if uri.startswith("s3://"):
        resolved = s3_options(storage_options)
        kwargs: dict[str, Any] = {}
        if endpoint := resolved.get("AWS_ENDPOINT_URL"):
            scheme, _, host = endpoint.partition("://")
            kwargs |= {"endpoint_override": host, "scheme": scheme}
        if region := resolved.get("AWS_REGION"):
            kwargs["region"] = region
        if resolved.get("AWS_ACCESS_KEY_ID"):
            kwargs["access_key"] = resolved["AWS_ACCESS_KEY_ID"]
            kwargs["secret_key"] = resolved.get("AWS_SECRET_ACCESS_KEY")
            kwargs["session_token"] = resolved.get("AWS_SESSION_TOKEN")
        kwargs["connect_timeout"] = _CONNECT_SECONDS
        kwargs["retry_strategy"] = pafs.AwsStandardS3RetryStrategy(max_attempts=_ATTEMPTS)
        return pafs.S3FileSystem(**kwargs), uri.removeprefix("s3://")
    return pafs.LocalFileSystem(), uri.removeprefix("file://")


def fsspec_options(uri: str, storage_options: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments of ``fsspec.filesystem`` / ``fsspec.open`` for ``uri``: for S3 the
    endpoint, and timeouts and retries that fail in seconds (as :data:`FAIL_FAST` does for
    delta-rs) instead of botocore's default retry loop; ``{}`` for a local path."""
    if not uri.startswith(("s3://", "s3a://")):
        return {}
    endpoint = s3_options(storage_options or {}).get("AWS_ENDPOINT_URL")
    return {
        "client_kwargs": {"endpoint_url": endpoint} if endpoint else {},
        "config_kwargs": {
            "connect_timeout": _CONNECT_SECONDS,
            "retries": {"max_attempts": _ATTEMPTS, "mode": "standard"},
        },
    }


def fsspec_fs(uri: str, storage_options: Mapping[str, str]):
    """An fsspec filesystem and the path inside it (local or S3), for globbing."""
    import fsspec

    if uri.startswith("s3://"):
        fs = fsspec.filesystem("s3", **fsspec_options(uri, storage_options))
        return fs, uri.removeprefix("s3://").rstrip("/")
    fs = fsspec.filesystem("file")
    return fs, uri.removeprefix("file://").rstrip("/")


# What a storage client says when it cannot reach S3 or is refused by it, and the cause to
# name: object_store (delta-rs) and pyarrow put it in the message, botocore in its class.
_CAUSES = (
    (("connection refused", "econnrefused"), "connection refused"),
    (("timed out", "timeout", "deadline"), "no answer (timed out)"),
    (("dns error", "name or service not known", "nodename nor servname",
      "temporary failure in name resolution"), "the host name does not resolve"),  # fmt: skip
    (("invalidaccesskeyid", "signaturedoesnotmatch", "expiredtoken", "accessdenied",
      "access denied", "forbidden", "403", "nocredentials", "unable to locate credentials",
      "invalidtoken"), "the credentials were refused"),  # fmt: skip
    (("nosuchbucket", "bucket does not exist", "the specified bucket does not exist"),
     "the bucket does not exist"),  # fmt: skip
    (("error sending request", "tcp connect error", "could not connect to the endpoint",
      "connection reset", "connecterror", "connection aborted"), "the endpoint cannot be reached"),
)  # fmt: skip


def unreachable_cause(err: BaseException) -> str | None:
    """Why ``err`` (or an exception it was raised from) says S3 could not be used: a
    refused or silent endpoint, an unknown host, refused credentials or a missing bucket;
    None for any other error."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        text = f"{type(err).__name__} {err}".lower()
        for needles, cause in _CAUSES:
            if any(n in text for n in needles):
                return cause
        err = err.__cause__ or err.__context__
    return None


def describe_unreachable(
    uri: str,
    setting: str,
    storage_options: Mapping[str, str],
    cause: str,
    options_setting: str | None = None,
) -> str:
    """One line for a user: what could not be reached, where, which settings say so
    (``setting`` names the path, ``options_setting`` the storage options if there are
    any), and what to check."""
    endpoint = s3_options(storage_options).get("AWS_ENDPOINT_URL")
    from_where = " or ".join(filter(None, [options_setting, "$AWS_ENDPOINT_URL"]))
    where = (
        f"the S3 endpoint {endpoint} (from {from_where})"
        if endpoint
        else f"AWS S3 (no endpoint set in {from_where})"
    )
    hint = {
        "the credentials were refused": "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
        "(or the profile or role in use)",
        "the bucket does not exist": f"create the bucket or fix {setting}",
    }.get(cause, "check that the server runs and the endpoint is right")
    return f"cannot use {uri} ({setting}) at {where}: {cause}; {hint}"


@contextmanager
def reaching(
    uri: str,
    setting: str,
    storage_options: Mapping[str, str] | None = None,
    options_setting: str | None = None,
    error: type[Exception] = StorageUnreachableError,
) -> Iterator[None]:
    """Run the block; an error of a store that cannot be reached (see
    :func:`unreachable_cause`) becomes ``error`` with :func:`describe_unreachable`'s line.

    Example: ``with reaching(root, "landing.path"): fs.glob(pattern)``.
    """
    try:
        yield
    except Exception as err:
        cause = unreachable_cause(err) if uri.startswith(("s3://", "s3a://")) else None
        if cause is None:
            raise
        message = describe_unreachable(uri, setting, storage_options or {}, cause, options_setting)
        raise error(message) from err
