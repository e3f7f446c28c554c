"""Where the tables are: storage options for delta-rs and Spark tasks, and the filesystem
of a table URI (local or S3), all from one resolution of the S3 endpoint and region."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any


def s3_options(options: Mapping[str, str]) -> dict[str, str]:
    """``options`` completed from the environment for S3: the endpoint and the region
    (a value in ``options`` wins over the environment's)."""
    resolved = dict(options)
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
        return pafs.S3FileSystem(**kwargs), uri.removeprefix("s3://")
    return pafs.LocalFileSystem(), uri.removeprefix("file://")


def fsspec_fs(uri: str, storage_options: Mapping[str, str]):
    """An fsspec filesystem and the path inside it (local or S3), for globbing."""
    import fsspec

    if uri.startswith("s3://"):
        endpoint = s3_options(storage_options).get("AWS_ENDPOINT_URL")
        client_kwargs = {"endpoint_url": endpoint} if endpoint else {}
        fs = fsspec.filesystem("s3", client_kwargs=client_kwargs)
        return fs, uri.removeprefix("s3://").rstrip("/")
    fs = fsspec.filesystem("file")
    return fs, uri.removeprefix("file://").rstrip("/")
