"""The replay's history: ``silver.features`` and ``silver.labels`` of the whole range, read
once (Arrow, no Spark), and what a policy may know of them on a day.

Every question a policy asks goes through :meth:`History.labels_as_of`, the pandas form of
:func:`regrow.data.labels.labels_as_of` with the same boundary rule: at a cut-off instant
``c`` (exclusive) a label is known when it arrived before ``c``, and an event without one is
a negative only when its label window ``[t, t + label_delay_days]`` ended before ``c``. So a
policy deciding on day ``d`` (cut-off 00:00 UTC of ``d + 1``) never sees a label that
arrived later: a test replays a history whose late labels are poisoned and checks that no
decision, training set or metric of a day moves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from regrow.catalog import (
    ARRIVED,
    EVENT_DATE,
    FEATURES,
    LABEL_DATE,
    LABEL_STATUS,
    SILVER_LABELS,
    UNKNOWN,
    WINDOW_CLOSED,
    feature_columns,
    key_columns,
)
from regrow.data.labels import cutoff_instant, negative_label
from regrow.data.transform import TrainsetError
from regrow.monitoring.drift import Distribution
from regrow.monitoring.profile import bin_labels

if TYPE_CHECKING:
    from regrow.settings import Settings
    from regrow.storage.lakehouse import Lakehouse


class ReplayError(ValueError):
    """A replay that cannot run as asked: the message names the option, policy, day or column."""


@dataclass
class History:
    """The range's events (with their features) and every label as it arrived."""

    settings: Settings
    features: pd.DataFrame  # silver.features: keys, event_date, feature columns
    labels: pd.DataFrame  # silver.labels: event id, label, label time, label_date
    _by_day: dict[dt.date, pd.DataFrame] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        dataset = self.settings.dataset
        order = [dataset.event_timestamp, dataset.event_id]
        self.features = self.features.sort_values(order, kind="stable").reset_index(drop=True)
        self._by_day = {
            day: part.reset_index(drop=True)
            for day, part in self.features.groupby(EVENT_DATE, sort=True)
        }

    @property
    def days(self) -> list[dt.date]:
        return list(self._by_day)

    def day(self, day: dt.date) -> pd.DataFrame:
        """The events of ``day`` (no rows when the day has none)."""
        return self._by_day.get(day, self.features.iloc[:0])

    def between(self, first: dt.date, last: dt.date) -> pd.DataFrame:
        """The events of ``first``..``last`` (both included)."""
        parts = [part for day, part in self._by_day.items() if first <= day <= last]
        return pd.concat(parts, ignore_index=True) if parts else self.features.iloc[:0]

    def rows_per_day(self) -> dict[dt.date, int]:
        return {day: len(part) for day, part in self._by_day.items()}

    # ------------------------------------------------------------------------ labels
    def labels_as_of(self, events: pd.DataFrame, cutoff: dt.datetime) -> pd.DataFrame:
        """``events`` with their label as known at ``cutoff`` (an instant, exclusive): the
        label column, its time (a closed window's: when it closed) and ``label_status``
        (``arrived``, ``window_closed`` or ``unknown`` with a null label)."""
        dataset = self.settings.dataset
        label, label_time, event_id = dataset.label, dataset.label_timestamp, dataset.event_id
        known = self.labels[self.labels[label_time] < cutoff]
        # The latest label of an event wins (a revision), as in labels_as_of.
        known = known.sort_values(
            [label_time, LABEL_DATE, label], ascending=False, kind="stable"
        ).drop_duplicates(event_id)
        own = events.drop(columns=[c for c in (label, label_time) if c in events.columns])
        merged = own.merge(
            known[[event_id, label, label_time]], on=event_id, how="left", validate="m:1"
        )
        window_end = merged[dataset.event_timestamp] + pd.Timedelta(days=dataset.label_delay_days)
        closed = (window_end < cutoff).to_numpy()
        arrived = merged[label].notna().to_numpy()
        merged[LABEL_STATUS] = np.where(arrived, ARRIVED, np.where(closed, WINDOW_CLOSED, UNKNOWN))
        values = merged[label].astype("Float64")
        merged[label] = values.where(arrived, np.where(closed, negative_label(dataset), np.nan))
        merged[label] = merged[label].astype("Int64")
        merged[label_time] = merged[label_time].where(arrived, window_end.where(closed))
        return merged

    def positives(self, events: pd.DataFrame, known_by: dt.date) -> np.ndarray:
        """1.0 / 0.0 per event of ``events`` for its label as known at the end of
        ``known_by`` (NaN where it is still unknown), as the monitor counts them."""
        dataset = self.settings.dataset
        labelled = self.labels_as_of(events, cutoff_instant(known_by + dt.timedelta(days=1)))
        y = (labelled[dataset.label] == dataset.positive_label).astype("Float64")
        return y.where(labelled[LABEL_STATUS] != UNKNOWN).to_numpy(dtype=float, na_value=np.nan)

    def matured(self, cutoff: dt.date) -> pd.DataFrame:
        """The training candidates of a cut-off: the events of ``split.window_days``
        before it whose label is known there (``split.matured``), as
        :func:`regrow.data.trainset.load_matured` selects them.

        Raises:
            TrainsetError: the window holds no day of the history, or no matured label.
        """
        split = self.settings.split
        first = cutoff - dt.timedelta(days=split.window_days)
        events = self.between(first, cutoff - dt.timedelta(days=1))
        if events.empty:
            raise TrainsetError(f"cut-off {cutoff}: no event of the history in its window")
        at = cutoff_instant(cutoff)
        labelled = self.labels_as_of(events, at)
        eligible = labelled[LABEL_STATUS] != UNKNOWN
        if split.matured == "window_closed":  # an arrived label too waits for its window
            dataset = self.settings.dataset
            end = labelled[dataset.event_timestamp] + pd.Timedelta(days=dataset.label_delay_days)
            eligible &= end < at
        frame = labelled[eligible].reset_index(drop=True)
        if frame.empty:
            raise TrainsetError(
                f"cut-off {cutoff}: none of the {len(events)} events of its window has a "
                f"matured label"
            )
        return frame


def load_history(settings: Settings, lakehouse: Lakehouse, days: Sequence[dt.date]) -> History:
    """``days`` of silver.features and the labels of those events, read without Spark.

    Raises:
        ReplayError: a day of ``days`` has no silver.features partition.
    """
    dataset = settings.dataset
    built = lakehouse.partition_rows(FEATURES) if lakehouse.exists(FEATURES) else {}
    missing = [d for d in days if str(d) not in built]
    if missing:
        raise ReplayError(
            f"{FEATURES} has no partition for {len(missing)} day(s) of the replay "
            f"({', '.join(str(d) for d in missing[:5])}{' ...' if len(missing) > 5 else ''})"
        )
    columns = [*key_columns(dataset), EVENT_DATE, *feature_columns(dataset, settings.features)]
    features = _utc(
        lakehouse.to_arrow(FEATURES, partitions={EVENT_DATE: list(days)}).to_pandas(),
        [dataset.event_timestamp],
    )[list(dict.fromkeys(columns))]
    label_columns = [dataset.event_id, dataset.label, dataset.label_timestamp, LABEL_DATE]
    if lakehouse.exists(SILVER_LABELS):
        labels = lakehouse.to_arrow(SILVER_LABELS).to_pandas()[label_columns]
        labels = labels[labels[dataset.event_id].isin(features[dataset.event_id])]
    else:
        labels = pd.DataFrame({c: [] for c in label_columns})
    labels = _utc(labels, [dataset.label_timestamp]).reset_index(drop=True)
    return History(settings, features, labels)


def _utc(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    for column in columns:
        values = pd.to_datetime(frame[column], utc=True)
        frame[column] = values
    return frame


# ------------------------------------------------------------------------ counting
def quantile_edges(
    frame: pd.DataFrame, columns: Sequence[str], bins: int
) -> dict[str, list[float]]:
    """The inner cut points of each numeric column at its quantiles 1/bins ... (bins-1)/bins,
    as :func:`regrow.monitoring.profile.quantile_edges` counts them in Spark (values of the
    data, NaN and infinities ignored, repeated cut points dropped)."""
    probabilities = [i / bins for i in range(1, bins)]
    edges = {}
    for column in dict.fromkeys(columns):
        values = frame[column].astype("float64").to_numpy()
        values = values[np.isfinite(values)]
        if not values.size:
            edges[column] = []
            continue
        cuts = np.quantile(values, probabilities, method="inverted_cdf")
        edges[column] = list(dict.fromkeys(sorted(float(c) for c in cuts)))
    return edges


def profile(
    frame: pd.DataFrame, numeric: Mapping[str, list[float]], categorical: Sequence[str]
) -> dict[str, Distribution]:
    """Every column's :class:`Distribution` in ``frame``, as
    :func:`regrow.monitoring.profile.profile` counts it in Spark: a numeric value in its bin
    (one equal to an edge in the lower one), a categorical or boolean one by its text
    (``true``/``false`` for a boolean)."""
    out = {}
    for column, edges in numeric.items():
        values = frame[column].astype("float64").to_numpy()
        null = np.isnan(values)
        labels = bin_labels(edges)
        which = np.searchsorted(np.asarray(edges, dtype=float), values[~null], side="left")
        counts = np.bincount(which, minlength=len(labels))
        out[column] = Distribution(
            dict(zip(labels, map(int, counts), strict=True)), int(null.sum())
        )
    for column in categorical:
        values = frame[column]
        null = values.isna()
        text = values[~null].map(_text)
        counts = text.value_counts()
        out[column] = Distribution(
            {str(k): int(v) for k, v in sorted(counts.items())}, int(null.sum())
        )
    return out


def _text(value: object) -> str:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value)
