"""regrow's benchmarks: speed targets live here, never as timed assertions in tests.

A benchmark is one function registered with :func:`benchmark`. It receives a
:class:`BenchContext` (row count, a scratch directory, a shared SparkSession) and returns a
:class:`Measurement`; ``python -m bench`` adds the date, machine and versions and writes
``bench/results/<name>.json``. A new benchmark (validation cost, warm-start ratio, scoring
throughput ...) is one decorated function in a module listed in ``MODULES``.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
WORK_DIR = BENCH_DIR / ".work"
# Modules whose import registers benchmarks, in run order.
MODULES = (
    "bench.lakehouse_io",
    "bench.validation_cost",
    "bench.warm_start",
    "bench.scoring",
    "bench.monitoring",
    "bench.daily_cycle",
    "bench.backfill_range",
    "bench.duplicate_lookup",
    "bench.one_pass",
    "bench.replay",
)


@dataclass
class Target:
    """A speed target: ``value`` must be at least ``minimum`` (ratios: higher is better)."""

    name: str
    value: float
    minimum: float
    description: str = ""

    @property
    def passed(self) -> bool:
        return self.value >= self.minimum


@dataclass
class Measurement:
    """What one benchmark measured.

    ``timings`` maps a timed step to its raw seconds per repetition; medians are derived
    when the result is written. ``derived`` holds throughputs and ratios, ``memory`` peak
    RSS per phase, ``notes`` anything a reader needs to judge the numbers.
    """

    parameters: dict[str, Any]
    timings: dict[str, list[float]]
    derived: dict[str, float] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    memory: dict[str, dict[str, float]] = field(default_factory=dict)
    breakdown: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def medians(self) -> dict[str, float]:
        return {step: statistics.median(times) for step, times in self.timings.items()}


@dataclass
class BenchContext:
    rows: int
    repetitions: int
    work_dir: Path
    profile: bool = True
    _spark: SparkSession | None = None

    @property
    def spark(self) -> SparkSession:
        """The shared local SparkSession, built by regrow's own ``get_spark`` on first use."""
        if self._spark is None:
            from regrow.orchestration.spark import get_spark
            from regrow.settings import SparkSettings, load_settings

            configured = load_settings().spark
            conf = {**configured.conf, "spark.ui.enabled": "false"}
            self._spark = get_spark(
                SparkSettings(
                    master="local[*]",
                    app_name="regrow-bench",
                    shuffle_partitions=configured.shuffle_partitions,
                    driver_memory=configured.driver_memory,
                    conf=conf,
                )
            )
        return self._spark

    def stop(self) -> None:
        if self._spark is not None:
            spark, self._spark = self._spark, None
            try:
                spark.stop()
            except Exception as err:  # noqa: BLE001 - a JVM that died (out of heap) is gone
                print(f"the Spark session could not be stopped: {type(err).__name__}", flush=True)


@dataclass(frozen=True)
class Benchmark:
    name: str
    description: str
    run: Callable[[BenchContext], Measurement]


BENCHMARKS: dict[str, Benchmark] = {}


def benchmark(name: str, description: str):
    """Register ``run(ctx) -> Measurement`` as the benchmark ``name``."""

    def register(run: Callable[[BenchContext], Measurement]):
        if name in BENCHMARKS:
            raise ValueError(f"benchmark {name!r} is registered twice")
        BENCHMARKS[name] = Benchmark(name, description, run)
        return run

    return register


def repeat(
    step: Callable[[], Any],
    repetitions: int,
    setup: Callable[[], Any] | None = None,
    warmup: int = 1,
) -> list[float]:
    """Seconds of ``step`` per repetition after ``warmup`` untimed runs; ``setup`` runs
    untimed before each run (a fresh output folder, a new table name)."""
    times = []
    for i in range(warmup + repetitions):
        if setup is not None:
            setup()
        started = time.perf_counter()
        step()
        elapsed = time.perf_counter() - started
        if i >= warmup:
            times.append(elapsed)
    return times


def past_start(default: dt.date, days: int) -> dt.date:
    """``default``, or when ``days`` days from it would reach today (UTC), 1 January of the
    latest year whose ``days`` are all over: simulated days must be past (the simulator
    refuses others), and the same start all year keeps a benchmark's days comparable."""
    today = dt.datetime.now(dt.UTC).date()
    span = dt.timedelta(days=days - 1)
    if default + span < today:
        return default
    start = dt.date(today.year - 1, 1, 1)
    while start + span >= today:
        start = start.replace(year=start.year - 1)
    return start


class PeakRss:
    """Peak resident memory (MiB) of this Python process and, when given, the Spark JVM,
    per phase. On Linux the high-water mark is reset at the start of each phase
    (``/proc/<pid>/clear_refs``); elsewhere the process's lifetime peak from getrusage is
    reported, which only ever grows."""

    def __init__(self, jvm_pid: int | None = None) -> None:
        self.pids = {"python_driver": os.getpid()}
        if jvm_pid is not None:
            self.pids["spark_jvm"] = jvm_pid
        self.phases: dict[str, dict[str, float]] = {}
        self._resettable = Path("/proc/self/clear_refs").exists()

    def start(self) -> None:
        if self._resettable:
            for pid in self.pids.values():
                try:
                    Path(f"/proc/{pid}/clear_refs").write_text("5")
                except OSError:
                    pass

    def stop(self, phase: str) -> None:
        peaks = {}
        for who, pid in self.pids.items():
            peak = _vm_hwm_mib(pid) if self._resettable else None
            if peak is None and who == "python_driver":
                import resource

                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                peak = rss / 1024 / (1024 if sys.platform == "darwin" else 1)
            if peak is not None:
                peaks[f"{who}_peak_mib"] = round(peak, 1)
        self.phases[phase] = peaks


def _vm_hwm_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def machine() -> dict[str, Any]:
    """Cores, memory, OS, Python and the versions of the libraries benchmarks exercise."""
    try:
        memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory_gib = None
    versions = {}
    for package in ("pyspark", "deltalake", "pyarrow", "numpy", "pandas"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(memory_gib, 1) if memory_gib else None,
        "python": platform.python_version(),
        "versions": versions,
        "java": _java_version(),
        "git": _git_revision(),
    }


def _java_version() -> str | None:
    try:
        out = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stderr or out.stdout).splitlines()[0] if (out.stderr or out.stdout) else None


def _git_revision() -> dict[str, Any] | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=BENCH_DIR,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"],
            cwd=BENCH_DIR,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def result_document(
    bench: Benchmark, measurement: Measurement, host: dict[str, Any]
) -> dict[str, Any]:
    """The JSON written to ``bench/results/<name>.json``."""
    return {
        "benchmark": bench.name,
        "description": bench.description,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": host,
        "parameters": measurement.parameters,
        "timings_s": measurement.timings,
        "medians_s": measurement.medians(),
        "derived": measurement.derived,
        "targets": [{**asdict(t), "passed": t.passed} for t in measurement.targets],
        "all_targets_met": all(t.passed for t in measurement.targets),
        "peak_rss": measurement.memory,
        "breakdown": measurement.breakdown,
        "notes": measurement.notes,
    }
