"""Two writers that create the same table at the same moment, each overwriting the same
partition (the delta-rs engine's commit, no Spark): the table ends with one writer's rows,
never both.

delta-rs retried the losing create as the next version, with its files added and none of
the winner's removed. tests/integration/test_lakehouse.py's concurrent overwrites caught it
only when two writers' Spark jobs happened to finish together (once, in a fresh-clone run);
here the two commits start together, released by one file both spin on. The race is won
both ways by chance: before the fix, 2 of 8 rounds kept both writers' rows (0 of 8 after);
ROUNDS rounds miss it with a chance of about (3/4)^ROUNDS.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from deltalake import DeltaTable

ROUNDS = 12
WRITERS = ("w1", "w2")
# One process per writer: its file written first, then regrow's commit of a write planned
# before the table existed, the moment `go` appears.
CREATOR = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

    from regrow.storage.commit import Commit, commit_adds
    from regrow.storage.delta_log import TableLocation

    uri, writer, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    name = f"event_date=2026-02-01/{writer}.parquet"
    (Path(uri) / name).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"event_id": [f"{writer}-{k}" for k in range(5)]}), Path(uri) / name)
    row = {
        "path": name,
        "size": (Path(uri) / name).stat().st_size,
        "partition_values": json.dumps({"event_date": "2026-02-01"}),
        "modification_time": int(time.time() * 1000),
        "num_records": 5,
        "stats": json.dumps({"numRecords": 5}),
    }
    schema = pa.schema([("event_id", pa.string()), ("event_date", pa.date32())])
    commit = Commit(TableLocation("bronze.shared", uri, {}), "overwrite", ["event_date"],
                    {"event_date": "2026-02-01"}, False, schema)
    Path(f"{go}.{writer}").touch()
    while not go.exists():  # a spin, not a sleep: the two commits start within microseconds
        pass
    print(commit_adds([row], commit).version)
    """
)


def _race(script: Path, uri: str, go: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, str(script), uri, w, str(go)], text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for w in WRITERS
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not all(Path(f"{go}.{w}").exists() for w in WRITERS):
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            assert time.monotonic() < deadline
            time.sleep(0.01)
        go.touch()
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def test_two_writers_creating_one_table_leave_one_writers_rows(tmp_path):
    script = tmp_path / "creator.py"
    script.write_text(CREATOR)
    for n in range(ROUNDS):
        uri = str(tmp_path / f"shared{n}")
        _race(script, uri, tmp_path / f"go{n}")
        table = DeltaTable(uri)
        ids = sorted(table.to_pyarrow_table().column("event_id").to_pylist())
        assert len(ids) == 5 and len({i.split("-")[0] for i in ids}) == 1, (n, ids)
        assert table.version() == 1  # the create, then the other writer's overwrite
