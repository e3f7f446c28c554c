"""Writing simulated days as landing files, and the ``broken_feed`` scenario's faults."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import logging

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from regrow.data.landing import Kind, day_dir
from regrow.data.simulate.ground_truth import TRUTH_FILE, scenario_truth
from regrow.data.simulate.world import (
    STREAM_FAULTS,
    TRUTH_LABEL,
    TRUTH_LABEL_TIME,
    check_contract,
    day_streams,
    simulate_day,
)
from regrow.settings import DatasetSettings, LandingSettings, SimulatorSettings
from regrow.storage.options import fsspec_options

logger = logging.getLogger(__name__)

_BROKEN_ROW_SHARE = 0.01
_BAD_AMOUNT = "abc"


class SimulationError(ValueError):
    """Days that cannot be simulated: they reach today or later."""


def check_days_past(sim: SimulatorSettings, days: int, today: dt.date | None = None) -> None:
    """Every simulated day is over (UTC): a day's events span the whole day, and ingest
    quarantines what is still in the future (a year from the default start date, run in
    its last month, blocked at today after a quarter of an hour of backfill)."""
    today = today or dt.datetime.now(dt.UTC).date()
    last = sim.start_date + dt.timedelta(days=days - 1)
    if last >= today:
        raise SimulationError(
            f"{days} simulated day(s) from simulator.start_date {sim.start_date} end on "
            f"{last}, which is not over (today is {today}, UTC): ingest would quarantine "
            f"their events as in the future. Set simulator.start_date to "
            f"{today - dt.timedelta(days=days)} or earlier, or simulate fewer days"
        )


@dataclasses.dataclass(frozen=True)
class SimulationSummary:
    """What :func:`write_landing` wrote.

    ``rows`` counts the simulated rows per kind (``events``, ``labels``); a duplicated or
    truncated file of the ``broken_feed`` scenario is not counted twice.
    """

    root: str
    days: tuple[dt.date, ...]
    files: tuple[str, ...]
    rows: dict[str, int]
    truth_path: str


def claim_landing(root: str, replace: bool = False) -> None:
    """Check that the simulator may write under ``root`` (resolved landing path): it is
    empty, or an earlier simulation's (it has ``_scenario.json``). With ``replace``, the
    earlier simulation's ``events/`` and ``labels/`` folders are removed first, so days it
    wrote beyond this run's are gone.

    Raises:
        ValueError: ``root`` holds landing files the simulator did not write (the user's
            own data), naming the path and the setting that leaves it alone.
    """
    fs, _ = _landing_fs(root)
    root = root.rstrip("/")
    folders = [f"{root}/{kind}" for kind in ("events", "labels") if fs.exists(f"{root}/{kind}")]
    if not any(fs.find(folder) for folder in folders):
        return
    if not fs.exists(f"{root}/{TRUTH_FILE}"):
        raise ValueError(
            f"landing.path {root} holds files the simulator did not write (no {TRUTH_FILE}): "
            "it will not overwrite them. For your own data set simulator.enabled: false "
            "(or remove the simulator section); to simulate, point landing.path elsewhere"
        )
    if replace:
        for folder in folders:
            fs.rm(folder, recursive=True)


def write_landing(
    dataset: DatasetSettings,
    sim: SimulatorSettings,
    landing: LandingSettings,
    root: str,
    days: int | None = None,
) -> SimulationSummary:
    """Simulate ``days`` days (default ``sim.days``) and land their files under ``root``.

    ``root`` is the resolved landing path, local or ``s3://bucket/prefix``. Each day's folders
    are replaced (rerunning is idempotent); days beyond ``days`` are left alone. Labels that
    would arrive after the last simulated day are not written: they have not arrived yet.

    Raises:
        SimulationError: the last day is not over yet (:func:`check_days_past`).
    """
    check_contract(dataset)
    days = sim.days if days is None else days
    if days <= 0:
        raise ValueError(f"days must be > 0, got {days}")
    check_days_past(sim, days)
    frames = [simulate_day(dataset, sim, d) for d in range(days)]
    labels = _labels_by_day(dataset, sim, frames, days)
    fs, _ = _landing_fs(root)
    root = root.rstrip("/")
    written: list[str] = []
    per_day = []
    broken: dict[str, object] = {}
    for d, (events, arrived) in enumerate(zip(frames, labels, strict=True)):
        day = sim.start_date + dt.timedelta(days=d)
        event_rows = events[list(dataset.event_columns())]
        broken_day = sim.scenario == "broken_feed" and d == sim.drift_onset_day
        if broken_day and sim.drift_strength > 0:
            event_rows, faults = _break_rows(dataset, sim, d, event_rows)
            files = _broken_files(dataset, landing, event_rows)
            broken = {"date": day.isoformat(), **faults, "files": sorted(files)}
        else:
            files = {f"part-00000.{landing.format}": _serialise(dataset, landing, event_rows)}
        written += _replace_day(fs, day_dir(root, "events", day), files)
        label_file = _serialise(dataset, landing, arrived, kind="labels")
        label_files = {f"part-00000.{landing.format}": label_file}
        written += _replace_day(fs, day_dir(root, "labels", day), label_files)
        per_day.append(
            {
                "day_index": d,
                "date": day.isoformat(),
                "events": len(events),
                "frauds": int((events[TRUTH_LABEL] == dataset.positive_label).sum()),
                "labels": len(arrived),
            }
        )

    truth_path = f"{root}/{TRUTH_FILE}"
    truth = scenario_truth(dataset, sim, landing, days, per_day, broken)
    with fs.open(truth_path, "wb") as out:
        out.write((json.dumps(truth, indent=2) + "\n").encode("utf-8"))
    rows = {
        "events": sum(p["events"] for p in per_day),
        "labels": sum(p["labels"] for p in per_day),
    }
    logger.info(
        "simulated %d day(s) of scenario %s into %s: %d events, %d labels, %d files",
        days, sim.scenario, root, rows["events"], rows["labels"], len(written),
    )  # fmt: skip
    return SimulationSummary(
        root=root,
        days=tuple(sim.start_date + dt.timedelta(days=d) for d in range(days)),
        files=tuple(written),
        rows=rows,
        truth_path=truth_path,
    )


def _labels_by_day(
    dataset: DatasetSettings, sim: SimulatorSettings, frames: list[pd.DataFrame], days: int
) -> list[pd.DataFrame]:
    """The chargebacks arriving on each simulated day, sorted by arrival time."""
    frauds = pd.concat(
        [f.loc[f[TRUTH_LABEL] == dataset.positive_label] for f in frames], ignore_index=True
    )
    start = pd.Timestamp(sim.start_date, tz="UTC")
    arrival_day = (frauds[TRUTH_LABEL_TIME] - start) // pd.Timedelta(days=1)
    labels = pd.DataFrame({
        dataset.event_id: frauds[dataset.event_id],
        dataset.entity_id: frauds[dataset.entity_id],
        dataset.label: np.full(len(frauds), dataset.positive_label, dtype=np.int64),
        dataset.label_timestamp: frauds[TRUTH_LABEL_TIME],
    })  # fmt: skip
    labels = labels.assign(_day=arrival_day.to_numpy())
    labels = labels.sort_values([dataset.label_timestamp, dataset.event_id], kind="stable")
    grouped = {d: g.drop(columns="_day") for d, g in labels.groupby("_day", sort=True)}
    empty = labels.drop(columns="_day").iloc[:0]
    return [grouped.get(d, empty).reset_index(drop=True) for d in range(days)]


def _break_rows(
    dataset: DatasetSettings, sim: SimulatorSettings, day_index: int, rows: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, object]]:
    """Null keys and amounts as text in a share of the rows of a broken-feed day."""
    rng = day_streams(sim.seed, STREAM_FAULTS, day_index)[0]
    n = len(rows)
    k = max(1, min(n // 4, round(n * _BROKEN_ROW_SHARE * sim.drift_strength)))
    picked = rng.permutation(n)[: 4 * k].reshape(4, k)
    rows = rows.copy()
    keys = [dataset.event_id, dataset.entity_id, dataset.event_timestamp]
    for column, where in zip(keys, picked[:3], strict=True):
        rows.loc[rows.index[where], column] = None
    amount = rows["amount"].astype(object)
    amount.iloc[picked[3]] = _BAD_AMOUNT
    rows["amount"] = amount
    faults = {
        "null_rows": {c: int(rows[c].isna().sum()) for c in keys},
        "bad_type_rows": {"amount": k},
        "bad_value": _BAD_AMOUNT,
    }
    return rows, faults


def _broken_files(
    dataset: DatasetSettings, landing: LandingSettings, rows: pd.DataFrame
) -> dict[str, bytes]:
    """The broken day lands three files: the bulk, the bulk again, and a truncated tail."""
    fmt = landing.format
    split = len(rows) - max(2, len(rows) // 10)
    bulk = _serialise(dataset, landing, rows.iloc[:split])
    tail = _serialise(dataset, landing, rows.iloc[split:])
    if fmt == "parquet":
        truncated = tail[: len(tail) * 2 // 3]  # no footer: unreadable
    else:
        body, last = tail.rstrip(b"\n").rsplit(b"\n", 1)
        truncated = body + b"\n" + last[: len(last) // 2]
    return {
        f"part-00000.{fmt}": bulk,
        f"part-00000-redelivered.{fmt}": bulk,
        f"part-00001.{fmt}": truncated,
    }


def _serialise(
    dataset: DatasetSettings, landing: LandingSettings, rows: pd.DataFrame, kind: Kind = "events"
) -> bytes:
    types = dataset.event_columns() if kind == "events" else dataset.label_columns()
    if landing.format == "parquet":
        return _parquet(rows, types)
    text = rows.copy()
    for column, logical in types.items():
        if logical == "timestamp":
            text[column] = _iso(text[column])
        elif logical == "boolean" and landing.format == "csv":
            text[column] = text[column].map({True: "true", False: "false"})
    if landing.format == "csv":
        return text.to_csv(index=False, lineterminator="\n").encode("utf-8")
    if text.empty:
        return b""
    return text.to_json(orient="records", lines=True, force_ascii=False).encode("utf-8")


def _iso(times: pd.Series) -> pd.Series:
    return times.dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(object).where(times.notna(), None)


_ARROW_TYPES = {
    "string": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "int": pa.int32(),
}


def _parquet(rows: pd.DataFrame, types: dict[str, str]) -> bytes:
    fields = []
    for column, logical in types.items():
        textual = rows[column].dtype == object and logical not in ("string", "timestamp")
        # A wrongly typed value (broken_feed) makes the whole column text, as a real feed would.
        fields.append(pa.field(column, pa.string() if textual else _ARROW_TYPES[logical]))
    frame = rows[list(types)].copy()
    for field in fields:
        if field.type == pa.string():
            frame[field.name] = frame[field.name].map(_text, na_action="ignore")
    table = pa.Table.from_pandas(frame, schema=pa.schema(fields), preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(None), buffer)
    return buffer.getvalue()


def _landing_fs(root: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem of ``root`` with the S3 endpoint of this moment's environment.

    fsspec keeps one filesystem per set of arguments: without the endpoint among them, an
    S3 filesystem made while ``AWS_ENDPOINT_URL`` named one server (an Airflow task's
    connection) would be handed out again after it names another."""
    return fsspec.core.url_to_fs(root, **fsspec_options(root))


def _text(value: object) -> str:
    return value if isinstance(value, str) else repr(value)


def _replace_day(fs: fsspec.AbstractFileSystem, folder: str, files: dict[str, bytes]) -> list[str]:
    if fs.exists(folder):
        fs.rm(folder, recursive=True)
    fs.makedirs(folder, exist_ok=True)
    paths = []
    for name, content in sorted(files.items()):
        path = f"{folder}/{name}"
        with fs.open(path, "wb") as out:
            out.write(content)
        paths.append(path)
    return paths
