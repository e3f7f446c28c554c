"""MLflow tracking and the model registry: all model I/O of regrow goes through here.

One registered model per dataset (``mlflow.registered_model``, default ``dataset.name``),
with the aliases ``champion`` (what scoring uses) and ``challenger`` (the newest model that
was not promoted; it scores in shadow). A model version is an XGBoost booster saved in
XGBoost's own UBJSON format by ``mlflow.xgboost`` (never a pickle), with its
``transform.json`` beside it, and tags that hold its lineage (:data:`LINEAGE_TAGS`).

The default store is a SQLite database and a local artifact directory next to
``params.yaml``; ``mlflow.tracking_uri`` can name an HTTP server and
``mlflow.artifact_location`` an ``s3://`` prefix. Any failure to reach the store is a
:class:`RegistryError` that names the URI.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from regrow.data.trainset import TRANSFORM
from regrow.data.transform import Transform
from regrow.model.training import STATELESS, Model, Parent
from regrow.settings import Settings

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient


logger = logging.getLogger(__name__)

MODEL_FILE = "model.ubj"
# Tags every registered version carries (its lineage).
LINEAGE_TAGS = (
    "mode", "parent_version", "warm_starts_in_a_row", "trigger", "cutoff_date",
    "train_window", "train_last_event", "delta_versions", "trainset_sha256", "dvc_md5",
    "git_commit", "run_id",
)  # fmt: skip
PREVIOUS_CHAMPION = "previous_champion"
# The promotion gate's verdict on a version (regrow.model.promotion writes it).
GATE_OUTCOME = "gate.outcome"
KEPT = "kept"
T = TypeVar("T")


class RegistryError(RuntimeError):
    """The tracking server or registry cannot be reached, or a model version is missing."""


def tracking_uri(settings: Settings) -> str:
    """``mlflow.tracking_uri`` with a relative SQLite path made absolute (to params.yaml)."""
    uri = settings.mlflow.tracking_uri
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return prefix + settings.resolve(uri[len(prefix) :])
    return uri


def artifact_location(settings: Settings) -> str:
    location = settings.resolve(settings.mlflow.artifact_location)
    return location if "://" in location else Path(location).as_uri()


@dataclass(frozen=True)
class Version:
    """A registered model version: its number, run, aliases and tags."""

    name: str
    version: str
    run_id: str | None
    aliases: list[str]
    tags: dict[str, str]
    source: str

    @classmethod
    def of(cls, mv: ModelVersion) -> Version:
        return cls(mv.name, str(mv.version), mv.run_id, list(mv.aliases or []), dict(mv.tags or {}),
                   mv.source)  # fmt: skip


class Registry:
    """The project's MLflow experiment and registered model."""

    def __init__(self, settings: Settings) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        self.settings = settings
        self.name = settings.mlflow.registered_model or settings.dataset.name
        self.experiment = settings.mlflow.experiment or f"regrow-{settings.dataset.name}"
        self.uri = tracking_uri(settings)
        # An unreachable HTTP server must fail the task in seconds, not after MLflow's
        # default of 5 retries with backoff (~2 min) per request.
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(settings.mlflow.http_timeout_seconds)
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.mlflow.http_max_retries)
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        self.client: MlflowClient = MlflowClient(self.uri, registry_uri=self.uri)

    # ----------------------------------------------------------------------- plumbing
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except RegistryError:
            raise
        except Exception as err:  # mlflow raises MlflowException, requests/SQLAlchemy errors
            raise RegistryError(f"MLflow at {self.uri}: {what} failed: {_first_line(err)}") from err

    def check(self) -> None:
        """Fail now, clearly, when the tracking store cannot be reached."""
        self._call("connecting", lambda: self.client.search_experiments(max_results=1))

    def experiment_id(self) -> str:
        def get_or_create() -> str:
            found = self.client.get_experiment_by_name(self.experiment)
            if found is not None:
                return found.experiment_id
            return self.client.create_experiment(
                self.experiment, artifact_location=artifact_location(self.settings)
            )

        return self._call(f"opening experiment {self.experiment}", get_or_create)

    # --------------------------------------------------------------------------- runs
    @contextmanager
    def run(self, name: str, tags: Mapping[str, str] | None = None) -> Iterator[str]:
        """An MLflow run; yields its id. A failure inside marks the run FAILED."""
        import mlflow

        experiment_id = self.experiment_id()
        active = self._call(
            "starting a run",
            lambda: mlflow.start_run(
                experiment_id=experiment_id, run_name=name, tags=dict(tags or {})
            ),
        )
        try:
            yield active.info.run_id
        except BaseException:
            mlflow.end_run("FAILED")
            raise
        self._call("ending the run", lambda: mlflow.end_run("FINISHED"))

    def log_model(self, model: Model, example: Any) -> tuple[str, str]:
        """Log the booster (UBJSON) with its signature, input example and transform.json,
        in the active run; returns the model URI and MLflow's model id."""
        import mlflow
        import mlflow.xgboost
        import xgboost as xgb
        from mlflow.models import infer_signature

        inputs = model.inputs(example)
        signature = infer_signature(inputs, model.booster.inplace_predict(inputs))
        with tempfile.TemporaryDirectory() as tmp:
            transform = Path(tmp) / TRANSFORM
            transform.write_text(json.dumps(model.transform.to_dict(), indent=2, sort_keys=True))
            info = self._call(
                "logging the model",
                lambda: mlflow.xgboost.log_model(
                    model.booster, name="model", model_format="ubj", signature=signature,
                    input_example=inputs, extra_files=[str(transform)],
                    # Declared, not inferred: inference exports the whole lock file (~5 s).
                    pip_requirements=[f"xgboost=={xgb.__version__}", f"mlflow=={mlflow.__version__}"],
                ),
            )  # fmt: skip
        return info.model_uri, info.model_id

    # ----------------------------------------------------------------------- registry
    def register(
        self, model_uri: str, model_id: str, run_id: str, tags: Mapping[str, str]
    ) -> Version:
        """A new version of the registered model, with its lineage tags."""
        from mlflow.exceptions import MlflowException

        def create() -> Version:
            try:
                self.client.create_registered_model(self.name)
            except MlflowException as err:
                if "RESOURCE_ALREADY_EXISTS" not in str(err.error_code):
                    raise
            mv = self.client.create_model_version(
                self.name, model_uri, run_id=run_id, model_id=model_id,
                tags={k: str(v) for k, v in tags.items() if v is not None},
            )  # fmt: skip
            return Version.of(mv)

        return self._call(f"registering a version of {self.name}", create)

    def version(self, version: str) -> Version:
        return self._call(
            f"reading {self.name} v{version}",
            lambda: Version.of(self.client.get_model_version(self.name, str(version))),
        )

    def alias(self, alias: str) -> Version | None:
        """The version an alias points to, or None when it is not set (or no model yet)."""
        from mlflow.exceptions import MlflowException

        def get() -> Version | None:
            try:
                return Version.of(self.client.get_model_version_by_alias(self.name, alias))
            except MlflowException as err:
                if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    return None
                raise

        return self._call(f"reading alias {alias} of {self.name}", get)

    def versions(self) -> list[Version]:
        """Every version of the registered model, newest first."""
        from mlflow.exceptions import MlflowException

        def listing() -> list[Version]:
            try:
                aliases = self.client.get_registered_model(self.name).aliases or {}
            except MlflowException as err:
                if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                    return []
                raise
            found = self.client.search_model_versions(f"name = '{self.name}'")
            # search results do not carry aliases in every store: take them from the model.
            out = []
            for v in found:
                version = Version.of(v)
                names = sorted(a for a, n in aliases.items() if str(n) == version.version)
                out.append(Version(**{**version.__dict__, "aliases": names}))
            return sorted(out, key=lambda v: -int(v.version))

        return self._call(f"listing versions of {self.name}", listing)

    def set_alias(self, alias: str, version: str) -> None:
        self._call(
            f"setting {alias} -> v{version}",
            lambda: self.client.set_registered_model_alias(self.name, alias, str(version)),
        )

    def delete_alias(self, alias: str) -> None:
        self._call(
            f"removing alias {alias}",
            lambda: self.client.delete_registered_model_alias(self.name, alias),
        )

    def tag_version(self, version: str, tags: Mapping[str, Any]) -> None:
        def tag() -> None:
            for k, v in tags.items():
                self.client.set_model_version_tag(self.name, str(version), k, str(v))

        self._call(f"tagging v{version}", tag)

    def tag_run(self, run_id: str, tags: Mapping[str, Any]) -> None:
        def tag() -> None:
            for k, v in tags.items():
                self.client.set_tag(run_id, k, str(v)[:5000])

        self._call(f"tagging run {run_id}", tag)

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str) -> None:
        """Attach a file (a report) to an existing run, e.g. the champion's training run."""
        self._call(
            f"logging {Path(path).name} to run {run_id}",
            lambda: self.client.log_artifact(run_id, str(path), artifact_path),
        )

    # -------------------------------------------------------------------------- loads
    def load(self, version: str) -> Model:
        """The booster and transform of a registered version."""
        import xgboost as xgb

        found = self.version(version)

        def download() -> Model:
            import mlflow.artifacts

            with tempfile.TemporaryDirectory() as tmp:
                local = Path(mlflow.artifacts.download_artifacts(
                    f"models:/{self.name}/{found.version}", dst_path=tmp
                ))  # fmt: skip
                booster_files = list(local.rglob(MODEL_FILE))
                transforms = list(local.rglob(TRANSFORM))
                if not booster_files or not transforms:
                    raise RegistryError(
                        f"{self.name} v{found.version} ({found.source}) has no {MODEL_FILE} or "
                        f"{TRANSFORM}: it was not logged by regrow"
                    )
                booster = xgb.Booster()
                booster.load_model(str(booster_files[0]))
                transform = Transform.from_dict(json.loads(transforms[0].read_text()))
                return Model(booster, transform)

        return self._call(f"loading {self.name} v{found.version}", download)

    def parent(self, version: Version) -> Parent:
        """A version as the parent of a warm start (its model and training window)."""
        end = version.tags.get("train_last_event")
        if not end:
            raise RegistryError(
                f"{self.name} v{version.version} has no train_last_event tag: it cannot be "
                f"warm-started (retrain stateless)"
            )
        return Parent(
            model=self.load(version.version),
            version=version.version,
            train_end=dt.datetime.fromisoformat(end),
            warm_starts_in_a_row=int(version.tags.get("warm_starts_in_a_row", "0")),
            refused_full_end=self._refused_full_end(version),
        )

    def _refused_full_end(self, version: Version) -> dt.datetime | None:
        """The newest training event of the versions after ``version`` that were trained
        from scratch and that the gate kept out (:data:`GATE_OUTCOME` kept), if any."""
        ends = [
            dt.datetime.fromisoformat(v.tags["train_last_event"])
            for v in self.versions()
            if int(v.version) > int(version.version) and v.tags.get("mode") == STATELESS
            and v.tags.get(GATE_OUTCOME) == KEPT and v.tags.get("train_last_event")
        ]  # fmt: skip
        return max(ends, default=None)


def _first_line(err: Exception) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:500]
