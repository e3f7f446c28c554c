"""The compose stack's one-off setup, run by its ``airflow-init`` service after
``airflow db migrate`` (docker-compose.yaml; docs/operations.md):

1. the S3 buckets exist (``$REGROW_BUCKETS``, comma-separated), created on the stack's
   S3 store (``$AWS_ENDPOINT_URL``) when missing, waiting up to ``--wait`` seconds for
   the store to answer;
2. the API server's login: ``$AIRFLOW_ADMIN_PASSWORD`` written for the user ``admin`` into
   the simple auth manager's passwords file (``--passwords-file``), so the password is the
   one in .env, not one generated into a container's log;
3. the Airflow connections regrow's DAGs use (``--connection``, repeatable) resolve
   (``airflow connections get``: from AIRFLOW_CONN_* variables, the database or a secrets
   backend); their values are never printed.

Each problem ends the script with one line naming the thing and the fix (exit 1).

    python docker/stack_init.py --passwords-file /opt/airflow/config/passwords.json \
        --connection aws_default --connection spark_connect_default
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


class SetupError(RuntimeError):
    """One line for the user: what is wrong and how to fix it."""


def ensure_buckets(names: list[str], endpoint: str | None, wait: float) -> list[str]:
    """Create the buckets that do not exist yet; return those created."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint or None,
        config=Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 1}),
    )
    where = endpoint or "AWS S3"
    deadline = time.monotonic() + wait
    while True:
        try:
            existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
            break
        except ClientError as e:
            raise SetupError(
                f"S3 at {where} refused the credentials ({e.response['Error'].get('Code')}): "
                "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in .env"
            ) from e
        except BotoCoreError as e:
            if time.monotonic() >= deadline:
                raise SetupError(
                    f"S3 at {where} did not answer within {wait:.0f} s ({e}): is the minio "
                    "service up (docker compose ps), and AWS_ENDPOINT_URL right?"
                ) from e
            time.sleep(1)
    created = []
    for name in names:
        if name in existing:
            continue
        try:
            s3.create_bucket(Bucket=name)
        except (BotoCoreError, ClientError) as e:
            raise SetupError(f"cannot create bucket {name!r} on {where}: {e}") from e
        created.append(name)
    return created


def write_passwords(path: Path, password: str, user: str = "admin") -> None:
    """The simple auth manager's passwords file: ``{user: password}``, readable by its owner
    and group (the Airflow containers run in group 0)."""
    if not password:
        raise SetupError("AIRFLOW_ADMIN_PASSWORD is empty: set it in .env (see .env.example)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({user: password}) + "\n")
    tmp.chmod(0o660)
    os.replace(tmp, path)


def check_connections(conn_ids: list[str], airflow: str = "airflow") -> None:
    """Every connection in ``conn_ids`` resolves (its value is not printed)."""
    for conn_id in conn_ids:
        result = subprocess.run(
            [airflow, "connections", "get", conn_id, "-o", "json"],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise SetupError(
                f"Airflow connection {conn_id!r} is not defined: set "
                f"AIRFLOW_CONN_{conn_id.upper()} (docker-compose.yaml, x-airflow-env) or "
                "create it with `airflow connections add`"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passwords-file", type=Path)
    parser.add_argument("--connection", action="append", default=[])
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for S3")
    args = parser.parse_args(argv)
    try:
        buckets = [b.strip() for b in os.environ.get("REGROW_BUCKETS", "").split(",") if b.strip()]
        if buckets:
            created = ensure_buckets(buckets, os.environ.get("AWS_ENDPOINT_URL"), args.wait)
            print(f"stack_init: buckets {', '.join(buckets)} ready (created: {created or 'none'})")
        if args.passwords_file:
            write_passwords(args.passwords_file, os.environ.get("AIRFLOW_ADMIN_PASSWORD", ""))
            print(f"stack_init: admin password written to {args.passwords_file}")
        check_connections(args.connection)
        if args.connection:
            print(f"stack_init: connections {', '.join(args.connection)} resolve")
    except SetupError as e:
        print(f"stack_init: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
