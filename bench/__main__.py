"""``python -m bench [--rows N] [--only NAME] [--repetitions R]``: run the benchmarks and
write one JSON per benchmark to ``bench/results/<name>.json``."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from bench import BENCHMARKS, MODULES, RESULTS_DIR, WORK_DIR, BenchContext, machine, result_document


def main(argv: list[str] | None = None) -> int:
    for module in MODULES:
        importlib.import_module(module)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of simulated data")
    parser.add_argument("--repetitions", type=int, default=3, help="timed runs (median taken)")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run only NAME")
    parser.add_argument("--no-profile", action="store_true", help="skip the time breakdowns")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="where results go")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    selected = [BENCHMARKS[n] for n in (args.only or BENCHMARKS)]
    host = machine()
    args.results.mkdir(parents=True, exist_ok=True)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=WORK_DIR))
    ctx = BenchContext(args.rows, args.repetitions, scratch, profile=not args.no_profile)
    written = []
    try:
        for bench in selected:
            print(f"== {bench.name}: {bench.description}", flush=True)
            measurement = bench.run(ctx)
            document = result_document(bench, measurement, host)
            path = args.results / f"{bench.name}.json"
            path.write_text(json.dumps(document, indent=2, default=str) + "\n")
            written.append(path)
            _print_summary(document)
    finally:
        ctx.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    for path in written:
        print(f"wrote {path}")
    return 0


def _print_summary(doc: dict) -> None:
    print(
        f"   {doc['machine']['cores']} cores, {doc['machine']['memory_gib']} GiB, "
        f"parameters {doc['parameters']}"
    )
    width = max((len(step) for step in doc["medians_s"]), default=4)  # none: a run failed
    print(f"   {'step':<{width}}  {'median s':>9}  runs")
    for step, median in doc["medians_s"].items():
        runs = ", ".join(f"{t:.3f}" for t in doc["timings_s"][step])
        print(f"   {step:<{width}}  {median:>9.3f}  [{runs}]")
    for name, value in doc["derived"].items():
        print(f"   {name:<40} {value:>14,.3f}")
    for target in doc["targets"]:
        verdict = "PASS" if target["passed"] else "MISS"
        print(f"   target {target['name']}: {target['value']:.3f} >= {target['minimum']} {verdict}")
    for phase, peaks in doc["peak_rss"].items():
        print(f"   peak RSS {phase}: {peaks}")
    for line in doc["notes"]:
        print(f"   note: {line}")


if __name__ == "__main__":
    sys.exit(main())
