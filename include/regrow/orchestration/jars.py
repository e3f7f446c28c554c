"""The JVM jars regrow adds to Spark, pinned: Delta Lake's connector (the delta-spark
engine) and hadoop-aws with the AWS SDK it was built against (``s3a://``).

They are fetched once from Maven (``make setup`` runs ``regrow jars fetch``) into one folder
per Spark line: ``$REGROW_JARS_DIR``, else ``~/.cache/regrow/jars/spark-<line>`` (a cache
shared by every checkout on the machine, like Ivy's, so a fresh clone works offline after
the first fetch). Every regrow Spark session (in process, spark-submit, the Connect server)
then gets them through ``spark.jars`` (:func:`spark_jars`), and ``lakehouse.engine: auto``
picks delta-spark.

Only the standard library: the Dockerfile runs this file to bake the jars before the project
is installed (``python jars.py fetch``).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

# The Spark line the jars are built for: pyproject.toml pins pyspark to it (Delta 4.4 has
# artifacts for Spark 4.1 and 4.2, none for 4.3).
SPARK_LINE = "4.2"
DEFAULT_REPO = "https://repo1.maven.org/maven2"
DELTA, S3A = "delta", "s3a"


@dataclass(frozen=True)
class Artifact:
    group: str
    name: str
    version: str
    sha1: str  # what Maven Central publishes next to the jar
    size: int  # bytes: a jar of this size is taken as fetched (the SHA-1 is checked on fetch)
    role: str  # DELTA or S3A

    @property
    def coordinate(self) -> str:
        return f"{self.group}:{self.name}:{self.version}"

    @property
    def file_name(self) -> str:
        return f"{self.name}-{self.version}.jar"

    def url(self, repo: str) -> str:
        return f"{repo.rstrip('/')}/{self.group.replace('.', '/')}/{self.name}/{self.version}/{self.file_name}"


# delta-spark's runtime dependencies that Spark does not already ship (its Kernel modules;
# their own dependencies, Jackson, RoaringBitmap, Parquet and the Hadoop client, are in
# pyspark's jars). hadoop-aws matches pyspark's hadoop-client-api-3.5.0.jar, and the SDK
# bundle and the analytics accelerator are the versions its POM declares.
ARTIFACTS = (
    Artifact("io.delta", f"delta-spark_{SPARK_LINE}_2.13", "4.4.0",
             "c2ab26421b8de44a2161b5e0b7da7954049f1ca1", 9515916, DELTA),
    Artifact("io.delta", "delta-storage", "4.4.0",
             "a068e489ce20d7f79bc4ca2d3392f12adbb69ddd", 113863, DELTA),
    Artifact("io.delta", "delta-kernel-api", "4.4.0",
             "58b895b7000ed3d67551c30f1c83a39be11f590e", 2838619, DELTA),
    Artifact("io.delta", "delta-kernel-defaults", "4.4.0",
             "13f676570d3c8f2650c3e9a3142530c24720327f", 227185, DELTA),
    Artifact("io.delta", "delta-kernel-unitycatalog", "4.4.0",
             "4f5d11adea096407d41eb7e127c7911b027fdebf", 43048, DELTA),
    Artifact("org.apache.hadoop", "hadoop-aws", "3.5.0",
             "9e594525d264c0db653c7f68da98b245f7d61ea5", 938071, S3A),
    Artifact("software.amazon.awssdk", "bundle", "2.35.4",
             "7252265e3970b214708e68a8b74a8fa8c875af1e", 686119507, S3A),
    Artifact("software.amazon.s3.analyticsaccelerator", "analyticsaccelerator-s3", "1.3.1",
             "6c9bd0f6c440c9a78e82d272f5f0252d942419f6", 2473459, S3A),
)  # fmt: skip


class JarsError(RuntimeError):
    """A jar cannot be fetched, or the jars on hand do not fit the installed Spark. The
    message names the artifact and the fix; the CLI prints it as one line."""


def jars_dir() -> Path:
    """Where the jars are: ``$REGROW_JARS_DIR``, else the user cache of this Spark line."""
    if os.environ.get("REGROW_JARS_DIR"):
        return Path(os.environ["REGROW_JARS_DIR"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "regrow" / "jars" / f"spark-{SPARK_LINE}"


def installed_spark() -> str:
    """The installed pyspark's version."""
    from importlib.metadata import version

    return version("pyspark")


def check_spark(spark_version: str | None = None) -> None:
    """Raise JarsError when the installed pyspark is not of :data:`SPARK_LINE`."""
    spark_version = spark_version or installed_spark()
    if not (spark_version == SPARK_LINE or spark_version.startswith(SPARK_LINE + ".")):
        delta = next(a for a in ARTIFACTS if a.role == DELTA)
        raise JarsError(
            f"{delta.coordinate} is built for Spark {SPARK_LINE} but pyspark {spark_version} "
            f"is installed: reinstall the locked environment (make setup), or set "
            "lakehouse.engine: delta-rs"
        )


def present(role: str, directory: Path | None = None) -> list[Path]:
    """The jars of ``role`` in ``directory`` when all of them are there, else [] (by size:
    the SHA-1 is checked when fetched, not at every session start; the SDK is 650 MB)."""
    directory = directory or jars_dir()
    artifacts = [a for a in ARTIFACTS if a.role == role]
    if not all(is_fetched(a, directory) for a in artifacts):
        return []
    return [directory / a.file_name for a in artifacts]


def is_fetched(artifact: Artifact, directory: Path) -> bool:
    path = directory / artifact.file_name
    return path.is_file() and path.stat().st_size == artifact.size


def spark_jars(directory: Path | None = None) -> dict[str, list[Path]]:
    """The complete roles found in ``directory``: ``{"delta": [...], "s3a": [...]}``.

    Raises:
        JarsError: the Delta jars are there but pyspark is of another Spark line.
    """
    found = {role: present(role, directory) for role in (DELTA, S3A)}
    found = {role: paths for role, paths in found.items() if paths}
    if found:
        check_spark()
    return found


def _sha1(path: Path) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(
    directory: Path | None = None, repo: str | None = None, echo=print, timeout: float = 60
) -> list[Path]:
    """Download the pinned jars into ``directory`` (those already there with the right
    SHA-1 are kept) and return their paths.

    Raises:
        JarsError: Maven cannot be reached, or a download does not match its pinned SHA-1
            (the artifact and the URL named).
    """
    check_spark()
    directory = directory or jars_dir()
    repo = repo or os.environ.get("REGROW_MAVEN_REPO") or DEFAULT_REPO
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for artifact in ARTIFACTS:
        path = directory / artifact.file_name
        paths.append(path)
        if is_fetched(artifact, directory):
            continue
        url = artifact.url(repo)
        echo(f"fetching {artifact.coordinate} from {repo}")
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{artifact.file_name}.")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as r:
                while block := r.read(1 << 20):
                    out.write(block)
            if (digest := _sha1(Path(tmp))) != artifact.sha1:
                raise JarsError(
                    f"{artifact.coordinate} from {url} has SHA-1 {digest}, not the pinned "
                    f"{artifact.sha1}: check REGROW_MAVEN_REPO (a mirror serving other files?)"
                )
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from other users (Docker)
            os.replace(tmp, path)
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise JarsError(
                f"cannot fetch {artifact.coordinate} from {url} ({reason}): check the "
                "network or set REGROW_MAVEN_REPO to a reachable Maven mirror, then run "
                "`make setup` again; without the jars, lakehouse.engine auto uses delta-rs"
            ) from e
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return paths


def main(argv: list[str] | None = None) -> int:
    """``python jars.py fetch [DIR]`` / ``python jars.py path``."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args else "path"
    try:
        if command == "fetch":
            directory = Path(args[0]) if args else None
            paths = fetch(directory)
            print(f"{len(paths)} jars for Spark {SPARK_LINE} in {paths[0].parent}")
        elif command == "path":
            print(jars_dir())
        else:
            print(f"unknown command {command!r}: fetch [DIR] | path", file=sys.stderr)
            return 2
    except JarsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
