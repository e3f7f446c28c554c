"""S3 access of an Airflow task: the AWS connection of ``airflow.aws_conn_id``, handed to
every client a task starts.

Inside a task, :func:`aws_environment` reads the connection through the Amazon provider
(``AwsBaseHook`` / ``AwsConnectionWrapper``): its access key, secret and session token, the
endpoint of its extra ``endpoint_url`` and its region. For the task's duration they are the
process environment, which is what each client reads: delta-rs and pyarrow through
:mod:`regrow.storage.options` (and the options shipped to Spark tasks from there), a
``spark-submit`` child process, the ``dvc`` subprocess, and MLflow's artifact upload
(``MLFLOW_S3_ENDPOINT_URL``). Without that connection the environment is left as it is
(``AWS_*`` variables, a profile or an instance role): today's behaviour. The log says which
was used, never a secret.

Before the task's work, each ``s3://`` bucket of the settings (lakehouse, landing, MLflow
artifacts) is reached once, so an endpoint that does not answer fails the task before it
writes anything, with one line that names the connection and the endpoint.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from regrow.storage.options import unreachable_cause

if TYPE_CHECKING:
    from regrow.settings import Settings

logger = logging.getLogger(__name__)

CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
# Every variable a connection may set; the rest of the environment is left alone.
VARIABLES = (*CREDENTIALS, "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "AWS_REGION",
             "AWS_DEFAULT_REGION")  # fmt: skip
# The reachability check fails in seconds, as regrow.storage.options.FAIL_FAST does.
_CHECK_CONFIG = {"connect_timeout": 5, "read_timeout": 10,
                 "retries": {"max_attempts": 2, "mode": "standard"}}  # fmt: skip


class S3UnreachableError(Exception):
    """A bucket of the settings cannot be used with the task's AWS access (a retry may
    help once the server is back: Airflow retries the task)."""


@dataclass(frozen=True)
class AwsAccess:
    """How a task reaches S3: from the Airflow connection ``conn_id`` or, when there is no
    such connection, from the environment. ``env`` holds secrets: it is never shown."""

    conn_id: str
    from_connection: bool
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def endpoint(self) -> str | None:
        source = self.env if self.from_connection else os.environ
        return source.get("AWS_ENDPOINT_URL") or None

    @property
    def region(self) -> str | None:
        source = self.env if self.from_connection else os.environ
        return source.get("AWS_REGION") or source.get("AWS_DEFAULT_REGION") or None

    def describe(self) -> str:
        """Where the access comes from, its endpoint and region: no secret."""
        where = f"the endpoint {self.endpoint}" if self.endpoint else "AWS S3 (no endpoint_url)"
        region = f", region {self.region}" if self.region else ""
        if self.from_connection:
            keys = "its access key" if self.env.get("AWS_ACCESS_KEY_ID") else "no access key"
            return f"Airflow connection {self.conn_id!r} ({keys}) at {where}{region}"
        return (
            f"the environment (no Airflow connection {self.conn_id!r}: AWS_* variables, "
            f"profile or role) at {where}{region}"
        )


def aws_access(conn_id: str) -> AwsAccess:
    """The AWS access of the connection ``conn_id`` (type ``aws``): its credentials (an
    explicit key pair, or what the connection's profile or role resolve to), the
    ``endpoint_url`` of its extra and its region, as environment variables. A connection
    that does not exist gives the environment's access."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper
    from airflow.providers.common.compat.sdk import AirflowNotFoundException

    hook = AwsBaseHook(aws_conn_id=conn_id, client_type="s3")
    try:
        connection = hook.get_connection(conn_id)
    except AirflowNotFoundException:
        return AwsAccess(conn_id, from_connection=False)
    wrapper = AwsConnectionWrapper(conn=connection)
    key, secret, token = (
        wrapper.aws_access_key_id, wrapper.aws_secret_access_key, wrapper.aws_session_token
    )  # fmt: skip
    if not key and (wrapper.role_arn or wrapper.profile_name):
        # A role to assume or a profile: what it resolves to now (the hook's own session).
        resolved = hook.get_credentials()
        key, secret, token = resolved.access_key, resolved.secret_key, resolved.token
    env = {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": token}
    endpoint = wrapper.get_service_endpoint_url("s3")
    if endpoint:
        env |= {"AWS_ENDPOINT_URL": endpoint, "MLFLOW_S3_ENDPOINT_URL": endpoint}
    if wrapper.region_name:
        env |= {"AWS_REGION": wrapper.region_name, "AWS_DEFAULT_REGION": wrapper.region_name}
    return AwsAccess(conn_id, True, {k: v for k, v in env.items() if v})


def s3_locations(settings: Settings) -> dict[str, str]:
    """The ``s3://`` places of the settings, setting -> URI."""
    places = {
        "lakehouse.root": settings.resolve(settings.lakehouse.root),
        "landing.path": settings.resolve(settings.landing.path),
        "mlflow.artifact_location": settings.mlflow.artifact_location,
    }
    return {k: v for k, v in places.items() if v.startswith("s3://")}


@contextmanager
def aws_environment(settings: Settings, check: bool = True) -> Iterator[AwsAccess]:
    """Run the block with the AWS access of ``airflow.aws_conn_id`` as the process's
    environment (restored afterwards), after checking that each ``s3://`` bucket of the
    settings answers (``check``).

    Raises:
        S3UnreachableError: a bucket cannot be used (refused or silent endpoint, refused
            credentials, missing bucket), naming the setting, the connection and the
            endpoint: before the block runs, or when the block fails for that reason.
    """
    access = aws_access(settings.airflow.aws_conn_id)
    places = s3_locations(settings)
    if places or access.from_connection:
        logger.info("S3 access: %s", access.describe())
    saved = {k: os.environ.get(k) for k in VARIABLES}
    if access.from_connection:
        for key in VARIABLES:  # nothing of another identity left beside the connection's
            os.environ.pop(key, None)
        os.environ.update(access.env)
    try:
        if check:
            for setting, uri in places.items():
                _check_bucket(access, setting, uri)
        try:
            yield access
        except S3UnreachableError:
            raise
        except Exception as err:
            cause = unreachable_cause(err) if places else None
            if cause is None:
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise S3UnreachableError(
                f"{first} [S3 with {access.describe()}: {cause}; {_fix(access)}]"
            ) from err
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _check_bucket(access: AwsAccess, setting: str, uri: str) -> None:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    bucket = uri.removeprefix("s3://").split("/", 1)[0]
    client = boto3.client(
        "s3",
        endpoint_url=access.endpoint,
        region_name=access.region,
        config=Config(**_CHECK_CONFIG),
    )
    try:
        client.head_bucket(Bucket=bucket)
    except (BotoCoreError, ClientError) as err:
        code = getattr(err, "response", {}).get("Error", {}).get("Code", "")
        cause = "the bucket does not exist" if code in ("404", "NoSuchBucket") else None
        cause = cause or unreachable_cause(err) or f"{type(err).__name__}: {err}"
        raise S3UnreachableError(_unreachable(access, setting, uri, cause)) from err


def _unreachable(access: AwsAccess, setting: str, uri: str, cause: str) -> str:
    fix = _fix(access)
    if cause == "the bucket does not exist":
        fix = f"create the bucket or fix {setting}"
    return f"cannot use {uri} ({setting}) with {access.describe()}: {cause}; {fix}"


def _fix(access: AwsAccess) -> str:
    if access.from_connection:
        return (
            f"check that the server runs, or fix the extra endpoint_url / credentials of the "
            f"Airflow connection {access.conn_id!r}"
        )
    return (
        f"define the Airflow connection {access.conn_id!r} (airflow.aws_conn_id), or fix "
        "AWS_ENDPOINT_URL / AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
    )
