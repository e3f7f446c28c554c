"""The bad-input corpus (tests/data/bad_inputs/README.md): each case's landing files as
bytes, built here so that a test lands them in its own tmp dir.

The files follow the default contract of params.yaml (card transactions). One case is one
file named ``<case>.csv``; the transaction ids of a case start with its own prefix, so
cases batched into one landing day do not interfere (duplicates are found across files).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import yaml

EVENT_COLUMNS = [
    "transaction_id",
    "card_id",
    "event_time",
    "amount",
    "distance_from_home_km",
    "merchant_risk",
    "merchant_category",
    "channel",
    "country",
    "card_present",
]
LABEL_COLUMNS = ["transaction_id", "card_id", "is_fraud", "label_time"]
HEADER = ",".join(EVENT_COLUMNS)
LABEL_HEADER = ",".join(LABEL_COLUMNS)
# A day in the past whatever the clock says, so that no row of it is "in the future".
DAY = dt.date(2025, 1, 15)
NOON = f"{DAY}T12:00:00Z"


def event(tid: str, **values: str) -> dict[str, str]:
    """An event row that is valid on DAY; ``values`` override single fields."""
    row = {
        "transaction_id": tid,
        "card_id": f"c-{tid}",
        "event_time": NOON,
        "amount": "12.5",
        "distance_from_home_km": "3.0",
        "merchant_risk": "0.1",
        "merchant_category": "grocery",
        "channel": "pos",
        "country": "FR",
        "card_present": "true",
    }
    unknown = set(values) - set(row)
    assert not unknown, f"not a contract column: {unknown}"
    return row | values


def line(row: dict[str, str], columns: list[str] = EVENT_COLUMNS, sep: str = ",") -> str:
    return sep.join(row[c] for c in columns)


def csv_text(lines: list[str], header: str = HEADER, final_newline: bool = True) -> bytes:
    return ("\n".join([header, *lines]) + ("\n" if final_newline else "")).encode("utf-8")


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # events | labels
    data: bytes
    rows: int  # data rows landed (lines after the header)

    def land(self, root: Path, day: dt.date) -> Path:
        folder = root / self.kind / day.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.csv"
        path.write_bytes(self.data)
        return path


def _events(name: str, lines: list[str], **kw) -> Case:
    return Case(name, "events", csv_text(lines, **kw), len(lines))


# ------------------------------------------------------------------ cases of their own day
# Each leaves the day with no row at all: they are landed alone.
EMPTY = Case("empty", "events", b"", 0)
HEADER_ONLY = Case("header_only", "events", (HEADER + "\n").encode(), 0)


def future(day: dt.date) -> Case:
    """Events of ``day`` (tomorrow, from the test's clock): every timestamp is ahead of now."""
    return _events(
        "future",
        [
            line(event("fu1", event_time=f"{day}T00:00:01Z")),
            line(event("fu2", event_time=f"{day}T12:00:00Z")),
        ],
    )


# --------------------------------------------------------------- cases batched into DAY
TRUNCATED_LINE = f"tr3,c-tr3,{NOON},7.25,1"  # cut off mid-row, no final newline
SEMICOLON_HEADER = HEADER.replace(",", ";")
EXTRA_HEADER = HEADER.replace("amount,", "amount,loyalty_tier,") + ",promo_code"
RENAMED_HEADER = HEADER.replace("amount,", "amount_eur,")
NO_COUNTRY = [c for c in EVENT_COLUMNS if c != "country"]
UNICODE = {"uc1": "café", "uc2": "日本", "uc3": "🛒🎉", "uc4": "cafe\u0301"}  # uc4: decomposed é
# The wall time of each row and its offset; all are 10:00 UTC on DAY.
TIME_ZONES = {
    "tz1": f"{DAY}T12:00:00+02:00",
    "tz2": f"{DAY}T04:30:00-05:30",
    "tz3": f"{DAY}T10:00:00",  # naive: taken as UTC
    "tz4": f"{DAY} 10:00:00",  # naive, space-separated
    "tz5": f"{DAY}T10:00:00Z",
}
OTHER_DAY = {  # transaction id -> (event_time landed, event_time in UTC, on DAY?)
    "od1": (
        f"{DAY - dt.timedelta(days=1)}T23:59:59Z",
        f"{DAY - dt.timedelta(days=1)} 23:59:59",
        False,
    ),
    "od2": (
        f"{DAY + dt.timedelta(days=1)}T00:00:00Z",
        f"{DAY + dt.timedelta(days=1)} 00:00:00",
        False,
    ),
    "od3": (f"{DAY}T01:00:00+02:00", f"{DAY - dt.timedelta(days=1)} 23:00:00", False),
    "od4": (f"{DAY}T00:00:00Z", None, True),
    "od5": (f"{DAY}T23:59:59Z", None, True),
}
# Labels of the batch: transaction id -> (is_fraud landed, expected reason or None).
# The label window of the repo's params.yaml (the tests' params are merged over it).
LABEL_DELAY_DAYS = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "params.yaml").read_text(encoding="utf-8")
)["dataset"]["label_delay_days"]

LABELS = {
    "tz1": ("1", None),
    "tz2": ("0", None),
    "tz3": ("1.0", None),
    "tz4": ("2", "is_fraud 2 not in [0, 1]"),
    "tz5": ("-1", "is_fraud -1 not in [0, 1]"),
    "uc1": ("yes", 'is_fraud: ["yes"] is not a valid int'),
    "uc2": ("0.5", 'is_fraud: ["0.5"] is not a valid int'),
    "ghost": (
        "1",
        f"label for an unknown transaction_id ghost (not in bronze.events within {LABEL_DELAY_DAYS} days before {DAY})",
    ),
    # An event that landed but was quarantined is not in bronze either.
    "ty1": (
        "0",
        f"label for an unknown transaction_id ty1 (not in bronze.events within {LABEL_DELAY_DAYS} days before {DAY})",
    ),
}


def batch() -> list[Case]:
    """Every case that can share one landing day (DAY) with the others."""
    non_utf8 = csv_text([line(event("nu1")), line(event("nu2", merchant_category="@@"))])
    non_utf8 = non_utf8.replace(b"@@", b"caf\xe9")  # Latin-1 é, not valid UTF-8
    extra_rows = [
        {**event("ex1", amount="5.5"), "loyalty_tier": "gold", "promo_code": "X1"},
        {**event("ex2", amount="6.5"), "loyalty_tier": "silver", "promo_code": "Y2"},
    ]
    extra_columns = EXTRA_HEADER.split(",")
    renamed = [{**event("rn1", amount="3.5"), "amount_eur": "3.5"}]
    duplicated = [line(event("du1"))] * 3 + [line(event("du2"))]
    redelivered = [line(event(f"rd{i}")) for i in (1, 2, 3)]
    bom = Case("bom", "events", b"\xef\xbb\xbf" + csv_text([line(event("bo1"))]), 1)
    quoted = [
        line(event("qu1", merchant_category='"say ""hi"", ok"')),  # RFC 4180 quote escaping
        line(event("qu2", merchant_category='"two\nlines"')),  # a newline inside quotes
    ]
    infinite = [line(event("in1", amount="Infinity")), line(event("in2", amount="NaN"))]
    return [
        bom,
        _events("quoted", quoted),
        _events("infinite", infinite + [line(event("in3"))]),
        _events(
            "truncated",
            [line(event("tr1")), line(event("tr2")), TRUNCATED_LINE],
            final_newline=False,
        ),
        _events(
            "semicolon",
            [line(event(f"sc{i}"), sep=";") for i in (1, 2)],
            header=SEMICOLON_HEADER,
        ),
        _events(
            "extra_column",
            [line(r, extra_columns) for r in extra_rows],
            header=EXTRA_HEADER,
        ),
        _events(
            "missing_column",
            [line(event(f"mc{i}"), NO_COUNTRY) for i in (1, 2)],
            header=",".join(NO_COUNTRY),
        ),
        _events(
            "renamed", [line(r, RENAMED_HEADER.split(",")) for r in renamed], header=RENAMED_HEADER
        ),
        _events(
            "mistyped",
            [
                line(event("ty1", amount="abc")),
                line(event("ty2", amount='"12,50"')),  # a decimal comma, quoted
                line(event("ty3", amount="12.50")),
            ],
        ),
        _events(
            "null_keys",
            [
                line(event("", card_id="c-nk1")),
                line(event("nk2", card_id="")),
                line(event("nk3", event_time="")),
                line(event("nk4", card_id="  ")),  # blank is missing too
                line(event("nk5")),
            ],
        ),
        _events("duplicated", duplicated),
        _events("redelivered_a", redelivered),
        _events("redelivered_b", redelivered),
        _events("other_day", [line(event(t, event_time=v[0])) for t, v in OTHER_DAY.items()]),
        Case("non_utf8", "events", non_utf8, 2),
        _events("unicode", [line(event(t, merchant_category=v)) for t, v in UNICODE.items()]),
        _events("time_zones", [line(event(t, event_time=v)) for t, v in TIME_ZONES.items()]),
        Case(
            "labels",
            "labels",
            csv_text(
                [f"{t},c-{t},{v},{NOON}" for t, (v, _) in LABELS.items()], header=LABEL_HEADER
            ),
            len(LABELS),
        ),
    ]
