"""The model's input transform: statistics fitted on the training split only, applied to
every split, at evaluation and at scoring (so a category never seen in training, or a
missing value, is handled the same way everywhere).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

# The value a missing category takes before it is coded.
MISSING = "__missing__"


class TrainsetError(ValueError):
    """A training set cannot be built or used as asked (dates, window, labels, columns the
    transform needs); the message says why."""


@dataclass
class Transform:
    """Statistics fitted on the training split, applied to every split and at scoring.

    Numeric and boolean features: missing values take the train median, then
    ``(x - mean) / std`` with train mean and std. Categorical features: a code per value
    seen at least ``rare_min_count`` times in train (most frequent first; a missing value
    is the value ``__missing__``); rarer values and values never seen in train share the
    rare code.
    """

    numeric: dict[str, dict[str, float]] = field(default_factory=dict)
    categorical: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @classmethod
    def fit(
        cls, train: pd.DataFrame, numeric: list[str], categorical: list[str], rare_min_count: int
    ) -> Transform:
        out = cls()
        for c in numeric:
            values = train[c].astype("float64").dropna()
            if values.empty:  # no value in train: impute 0, do not scale
                out.numeric[c] = {"median": 0.0, "mean": 0.0, "std": 1.0}
                continue
            median, mean, std = values.median(), values.mean(), values.std(ddof=0)
            out.numeric[c] = {
                "median": _finite(median, 0.0),
                "mean": _finite(mean, 0.0),
                "std": _finite(std, 1.0) or 1.0,
            }
        for c in categorical:
            counts = train[c].fillna(MISSING).astype(str).value_counts()
            kept = sorted(
                ((value, int(n)) for value, n in counts.items() if n >= rare_min_count),
                key=lambda item: (-item[1], item[0]),
            )
            codes = {value: code for code, (value, _) in enumerate(kept)}
            out.categorical[c] = {"codes": codes, "rare_code": len(codes)}
        return out

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model inputs of ``frame`` (raw silver.features columns), as float64 columns."""
        import pandas as pd

        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise TrainsetError(f"columns {missing} the transform was fitted on are missing")
        out = {}
        for c, stats in self.numeric.items():
            values = frame[c].astype("float64").fillna(stats["median"])
            out[c] = (values - stats["mean"]) / stats["std"]
        for c, spec in self.categorical.items():
            values = frame[c].fillna(MISSING).astype(str)
            out[c] = values.map(spec["codes"]).fillna(spec["rare_code"]).astype("float64")
        return pd.DataFrame(out, index=frame.index)

    def matrix(self, batch: pa.RecordBatch | pa.Table) -> np.ndarray:
        """The model inputs of Arrow rows as one float32 matrix: the values of
        ``apply(batch.to_pandas())``, computed without pandas (scoring calls this on every
        batch, and the pandas round trip cost as much as a fifth of a scoring task)."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        missing = [c for c in self.columns if c not in batch.schema.names]
        if missing:
            raise TrainsetError(f"columns {missing} the transform was fitted on are missing")
        # Filled a column at a time, so each is contiguous; the matrix is its transpose
        # (column-major), which inplace_predict reads through its strides, without a copy.
        out = np.empty((len(self.columns), batch.num_rows), dtype=np.float32)
        for j, (c, stats) in enumerate(self.numeric.items()):
            values = pc.cast(batch.column(c), pa.float64()).to_numpy(zero_copy_only=False)
            values = np.where(np.isnan(values), stats["median"], values)  # null and NaN alike
            np.subtract(values, stats["mean"], out=values)
            out[j] = np.divide(values, stats["std"], out=values)
        for j, (c, spec) in enumerate(self.categorical.items(), start=len(self.numeric)):
            column = batch.column(c)
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            if pa.types.is_string_view(column.type):
                column = column.cast(pa.string())
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                # Numbers, booleans, dates: codes are keyed by pandas' str() of the value.
                text = column.to_pandas().fillna(MISSING).astype(str)
                out[j] = text.map(spec["codes"]).fillna(spec["rare_code"]).to_numpy()
                continue
            # Codes are 0..n-1, so a value's position in this list is its code.
            known = pa.array(sorted(spec["codes"], key=spec["codes"].get), column.type)
            if column.null_count:
                column = column.fill_null(MISSING)
            codes = pc.index_in(column, value_set=known)
            out[j] = codes.fill_null(spec["rare_code"]).to_numpy(zero_copy_only=False)
        return out.T

    def rare(self, frame: pd.DataFrame) -> dict[str, int]:
        """Per categorical column, rows that get the rare code (rare or unseen in train)."""
        counts = {}
        for c, spec in self.categorical.items():
            values = frame[c].fillna(MISSING).astype(str)
            counts[c] = int((~values.isin(spec["codes"])).sum())
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {"numeric": self.numeric, "categorical": self.categorical}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Transform:
        return cls(numeric=dict(raw["numeric"]), categorical=dict(raw["categorical"]))


def _finite(value: float, default: float) -> float:
    return float(value) if value is not None and math.isfinite(value) else default
