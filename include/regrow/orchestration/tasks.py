"""The bodies of regrow's Airflow tasks: each DAG task is one call to a function here,
which builds the stage context, calls the library and turns the result into XCom.

Airflow's run-time facts arrive as arguments (the run id, the DAG id as the actor, the
triggering Asset events); errors that a retry cannot fix become ``AirflowFailException``
here, so that the DAG files stay wiring. The library is imported inside each function: the
DAG processor imports this module on every parse, and the tasks run in workers.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from regrow.orchestration.dags import asset, dag_settings, job_args

if TYPE_CHECKING:
    from airflow.sdk import Asset, PokeReturnValue

    from regrow.stage import StageContext

logger = logging.getLogger(__name__)

# regrow_retrain's `mode` param: train.mode of params.yaml.
DEFAULT_MODE = "default"
F = TypeVar("F", bound=Callable[..., Any])


def on_aws(body: F) -> F:
    """Run a task body with the AWS access of ``airflow.aws_conn_id`` (the connection, else
    the environment): :func:`regrow.orchestration.aws.aws_environment`."""

    @functools.wraps(body)
    def run(*args: Any, **kwargs: Any) -> Any:
        from regrow.orchestration.aws import aws_environment

        with aws_environment(dag_settings()):
            return body(*args, **kwargs)

    return run  # type: ignore[return-value]


def task_context(run_id: str | None, dag_id: str | None) -> StageContext:
    """The stage context of a task: the DAG's params.yaml, the run's id, the DAG as actor."""
    from regrow.orchestration.context import stage_context

    return stage_context(dag_settings(), run_id, actor=f"airflow:{dag_id}" if dag_id else None)


# ------------------------------------------------------------------------ Spark jobs
def run_connect_job(job: str, args: list[str], conn_id: str) -> None:
    """Run ``jobs/<job>`` in this task's process on the Spark Connect server of the
    ``conn_id`` connection (type ``spark_connect``): its ``main`` with ``args`` and the
    server's URL. A dead server fails the task at once, naming its address.

    Raises:
        AirflowException: the job failed (exit code 1: its log says why, e.g. a day blocked
            by its validation); a retry may help once the cause is fixed.
    """
    import importlib.util

    from airflow.exceptions import AirflowException
    from airflow.providers.apache.spark.hooks.spark_connect import SparkConnectHook

    from regrow.orchestration.aws import aws_environment
    from regrow.orchestration.dags import JOBS_FOLDER
    from regrow.orchestration.spark import answers, is_other_program, remote_address

    url = SparkConnectHook(conn_id).get_connection_url()
    host, port = remote_address(url)
    if not answers(url):
        raise AirflowException(
            f"no Spark Connect server answers at {host}:{port} (Airflow connection "
            f"{conn_id!r}): start it with `regrow spark start` (make spark-start), or point "
            "the connection at your server"
        )
    if is_other_program(url):
        raise AirflowException(
            f"what listens at {host}:{port} (Airflow connection {conn_id!r}) is no Spark "
            "Connect server: point the connection at your server's port"
        )
    path = JOBS_FOLDER / job
    spec = importlib.util.spec_from_file_location(f"regrow_job_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise AirflowException(f"no Spark job at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    logger.info("running jobs/%s %s on %s", job, " ".join(args), url)
    with aws_environment(dag_settings()):  # the job runs in this process: the driver
        code = module.main([*args, "--spark-remote", url])
    if code:
        raise AirflowException(f"jobs/{job} failed (exit code {code}); its log above says why")


# ------------------------------------------------------------------------ ingest
def poke_landing(ds: str, kind: str = "events") -> PokeReturnValue:
    """A landing sensor's poke: done when the day's ``kind`` files have landed (their
    paths go to XCom); the log names what it found or the pattern it waits for."""
    from airflow.sdk import PokeReturnValue

    from regrow.data import landing

    cfg = dag_settings()
    root, day = cfg.resolve(cfg.landing.path), dt.date.fromisoformat(ds)
    files = landing.find_files(root, cfg.landing, kind, day)
    if files:
        logger.info("found %d landing file(s) for %s: %s", len(files), ds, files)
    else:
        pattern = landing.day_pattern(root, cfg.landing, kind, day)
        logger.info("waiting for landing files matching %s", pattern)
    return PokeReturnValue(is_done=bool(files), xcom_value=files)


def ingest_path(params: Mapping[str, Any]) -> str:
    """regrow_ingest's branch: ``backfill_range`` when the run names a catch-up range (both
    ``catch_up_from`` and ``catch_up_to``), else the daily ``wait_for_events``."""
    from airflow.sdk.exceptions import AirflowFailException

    first, last = params.get("catch_up_from"), params.get("catch_up_to")
    if not first and not last:
        return "wait_for_events"
    if not (first and last):
        raise AirflowFailException(
            f"a catch-up range needs both catch_up_from and catch_up_to (got {first!r}, {last!r})"
        )
    if _as_day(last) < _as_day(first):
        raise AirflowFailException(f"catch_up_to {last} is before catch_up_from {first}")
    logger.info("catch-up range %s..%s in one Spark application", first, last)
    return "backfill_range"


def publish_range(params: Mapping[str, Any], outlet_events, assets: Sequence[Asset]) -> list[str]:
    """The days a catch-up range built, in the extra of each Asset event it publishes
    (regrow_score scores each of them)."""
    first, last = _as_day(params["catch_up_from"]), _as_day(params["catch_up_to"])
    days = [(first + dt.timedelta(days=k)).isoformat() for k in range((last - first).days + 1)]
    for published in assets:
        outlet_events[published].extra = {"days": days}
    return days


# ------------------------------------------------------------------------- score
def asset_event_days(triggering_asset_events: Mapping[Any, Any] | None, of: Asset) -> list[dt.date]:
    """The days of the DAG runs that published the ``of`` events a run was triggered by.

    A regrow_ingest run covers its logical date (``ds``), so an event's day is its source
    DAG run's logical date (its data interval start if it has none), in UTC; a catch-up
    range names its days in the event's extra (``{"days": [...]}``). An event with
    no source DAG run (posted through the REST API) names no day: it is logged and left out.

    Args:
        triggering_asset_events: the run's ``triggering_asset_events`` (Asset -> events).
    """
    days = []
    for event in (triggering_asset_events or {}).get(of, ()):
        named = (getattr(event, "extra", None) or {}).get("days")
        if named:  # a catch-up range names its days
            days += [_as_day(d) for d in named]
            continue
        run = event.source_dag_run
        when = run and (run.logical_date or run.data_interval_start)
        if when is None:
            logger.warning(
                "%s event of %s (source run %s) names no day: not scored",
                of.name, event.timestamp, event.source_run_id,
            )  # fmt: skip
            continue
        days.append(when.astimezone(dt.UTC).date())
    return days


def days_to_score(dates: Sequence[str] | None, event_days: Iterable[dt.date | str]) -> list[str]:
    """The days a regrow_score run scores, as YYYY-MM-DD, oldest first, each once.

    The run's ``dates`` param when it names any (a manual run, a re-score); else the days of
    the silver.features events that triggered the run (the scheduler may batch several
    events, of several days or of the same day rebuilt, into one run).

    Raises:
        ValueError: a day is not YYYY-MM-DD, or there is no day at all.
    """
    chosen = list(dates or []) or list(event_days)
    if not chosen:
        raise ValueError(
            "nothing to score: no silver.features event of this run names an ingest day and "
            'the dates param is empty. Pass dates, e.g. --conf \'{"dates": ["2026-01-05"]}\''
        )
    return [d.isoformat() for d in sorted({_as_day(d) for d in chosen})]


def _as_day(value: dt.date | str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"day to score {value!r} is not a date: expected YYYY-MM-DD") from None


def select_days(
    params: Mapping[str, Any], run_id: str, triggering_asset_events, of: Asset
) -> list[list[str]]:
    """regrow_score's days, as the ``jobs/score.py`` arguments of one mapped task each."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        days = days_to_score(params["dates"], asset_event_days(triggering_asset_events, of))
    except ValueError as err:  # nothing to score: a retry cannot change that
        raise AirflowFailException(str(err)) from err
    logger.info("scoring %d day(s): %s", len(days), ", ".join(days))
    return [job_args(day, run_id) for day in days]


# ----------------------------------------------------------------------- retrain
def retrain_trigger(force: bool, dag_run, triggering_asset_events) -> str:
    """What caused a regrow_retrain run, as recorded on the model version and decision."""
    if force:
        return "forced"
    requested = asset("retrain.requested").name
    if requested in {a.name for a in triggering_asset_events or ()}:
        return f"asset:{requested}"
    return "schedule" if dag_run.run_type == "scheduled" else "manual"


@on_aws
def check_retrain_needed(params: Mapping[str, Any], run_id: str, dag_id: str) -> bool:
    """False (skip the rest of the run) when the champion was trained on this snapshot."""
    from regrow.model.retrain import retrain_needed

    ctx = task_context(run_id, dag_id)
    needed, reason = retrain_needed(ctx, force=params["force_retrain"])
    logger.info("retrain %s: %s", "needed" if needed else "skipped", reason)
    return needed


@on_aws
def snapshot_trainset() -> dict[str, Any]:
    """Version the snapshot with DVC; its hash goes to XCom."""
    from regrow.model.versioning import snapshot_trainset

    return snapshot_trainset(dag_settings()).as_dict()


@on_aws
def train_model(
    params: Mapping[str, Any], run_id: str, dag_run, triggering_asset_events
) -> dict[str, Any]:
    """Train and register a challenger; its facts go to XCom. A training set that cannot
    make a model fails at once: only new data fixes it."""
    from airflow.sdk.exceptions import AirflowFailException

    from regrow.data.trainset import TrainsetError
    from regrow.model.challenger import train_challenger
    from regrow.model.training import TrainingError

    trigger = retrain_trigger(params["force_retrain"], dag_run, triggering_asset_events)
    mode = None if params["mode"] == DEFAULT_MODE else params["mode"]
    # The policy's request names the mode (a warm start, or from scratch when a cap says
    # so) and why; an explicit mode param wins.
    request = requested_retrain(triggering_asset_events)
    if request:
        trigger = f"policy:{request.get('trigger')} ({request.get('day')})"
        mode = mode or request.get("mode")
        logger.info("retrain requested by the policy: %s", request.get("reason"))
    ctx = task_context(run_id, dag_run.dag_id)
    try:
        return train_challenger(ctx, trigger=trigger, mode=mode).as_dict()
    except (TrainingError, TrainsetError) as err:  # the data, not the weather: no retry
        raise AirflowFailException(str(err)) from err


@on_aws
def evaluate_challenger(facts: Mapping[str, Any], run_id: str, dag_id: str) -> dict[str, Any]:
    """Challenger vs champion on the same rows; the report goes to XCom."""
    from regrow.model.challenger import evaluate_challenger

    return evaluate_challenger(task_context(run_id, dag_id), version=facts["version"]).as_dict()


@on_aws
def decide_promotion(report: Mapping[str, Any], run_id: str, dag_id: str) -> dict[str, Any]:
    """The gate: promote or keep, recorded in gold.decisions with the DAG as actor."""
    from airflow.sdk.exceptions import AirflowFailException

    from regrow.model.challenger import EvaluationReport
    from regrow.model.promotion import PromotionError, decide

    try:
        outcome = decide(task_context(run_id, dag_id), EvaluationReport.from_dict(report))
    except PromotionError as err:  # the champion moved under this run: evaluate again
        raise AirflowFailException(str(err)) from err
    logger.info("gate: %s", outcome.reason)
    return outcome.as_dict()


@on_aws
def report_retrain(facts: Mapping[str, Any], outcome: Mapping[str, Any]) -> str:
    """Write the markdown report of the run; the log names it."""
    from regrow.model.challenger import Challenger
    from regrow.model.promotion import GateOutcome
    from regrow.model.retrain import write_report

    path = write_report(
        dag_settings(), Challenger.from_dict(facts), GateOutcome.from_dict(dict(outcome))
    )
    logger.info("retrain report: %s", path)
    return str(path)


# ----------------------------------------------------------------------- monitor
@on_aws
def days_to_monitor(params: Mapping[str, Any], run_id: str, dag_id: str) -> list[str]:
    """regrow_monitor's days, YYYY-MM-DD, oldest first: the ``dates`` param when it names
    any (a manual rerun), else every scored day not monitored yet (empty: nothing to do,
    the rest of the run is skipped)."""
    from airflow.sdk.exceptions import AirflowFailException

    from regrow.monitoring.monitor import unmonitored_days

    if params.get("dates"):
        try:
            return days_to_score(params["dates"], [])
        except ValueError as err:
            raise AirflowFailException(str(err)) from err
    days = [d.isoformat() for d in unmonitored_days(task_context(run_id, dag_id))]
    logger.info("days to monitor: %s", ", ".join(days) or "none (every scored day is monitored)")
    return days


@on_aws
def decide_days(
    days: Sequence[str], params: Mapping[str, Any], run_id: str, dag_id: str
) -> list[dict[str, Any]]:
    """The retrain policy on each day, oldest first: one gold.decisions row per day.
    ``force_decision`` (a manual run) turns the last day's decision into a retrain."""
    from airflow.sdk.exceptions import AirflowFailException

    from regrow.policy.daily import PolicyError, decide_day, force_retrain

    ctx = task_context(run_id, dag_id)
    reports = []
    try:
        for day in days:
            reports.append(decide_day(ctx, dt.date.fromisoformat(day)))
        forced = params.get("force_decision")
        if forced and forced != "none" and days:
            reports[-1] = force_retrain(ctx, dt.date.fromisoformat(days[-1]), forced)
    except PolicyError as err:  # monitoring rows are missing: a retry cannot add them
        raise AirflowFailException(str(err)) from err
    for r in reports:
        logger.info("%s: %s (%s), budget left %d: %s", r.day, r.action, r.trigger,
                    r.budget_left, r.reason)  # fmt: skip
    return [r.as_dict() for r in reports]


def request_retrain(decisions: Sequence[Mapping[str, Any]], outlet_events, requested: Asset):
    """Publish ``retrain.requested`` with the newest retrain decision's mode and reason in
    the event's extra; skipped (no event) when no day asked for a retrain."""
    from airflow.sdk.exceptions import AirflowSkipException

    from regrow.policy.daily import PolicyReport

    wanted = [r for r in (PolicyReport(**d) for d in decisions) if r.retrain]
    if not wanted:
        raise AirflowSkipException("no day asked for a retrain")
    request = wanted[-1].request()
    outlet_events[requested].extra = request
    logger.info("retrain requested: %s", request)
    return request


@on_aws
def report_days(days: Sequence[str], run_id: str, dag_id: str) -> list[str]:
    """The HTML report of each day; the log names each file."""
    from regrow.monitoring.monitor import report_day

    ctx = task_context(run_id, dag_id)
    paths = [str(report_day(ctx, dt.date.fromisoformat(day))) for day in days]
    for path in paths:
        logger.info("monitoring report: %s", path)
    return paths


def requested_retrain(triggering_asset_events) -> Mapping[str, Any] | None:
    """The extra of the newest ``retrain.requested`` event that triggered a run, if any."""
    requested = asset("retrain.requested")
    events = [e for a, found in (triggering_asset_events or {}).items()
              if getattr(a, "name", None) == requested.name for e in found]  # fmt: skip
    return dict(events[-1].extra or {}) if events else None
