"""What a model was built from: the code's git commit, the DVC hash of the training-set
snapshot (and its ``dvc commit``/``dvc push``), and the lineage tags a registered version
carries so that any prediction can be traced to its data, its parents and its code.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from regrow.data.trainset import load_trainset
from regrow.model.registry import Version
from regrow.model.training import TrainResult
from regrow.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """A training-set snapshot as DVC versions it."""

    dvc_md5: str
    committed: bool
    pushed: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def git_commit() -> str:
    """The commit of regrow's code: ``$REGROW_GIT_COMMIT`` (set it in images built without
    .git), else ``git rev-parse HEAD`` where the package lives (``-dirty`` when tracked files
    changed), else ``unknown``."""
    if os.environ.get("REGROW_GIT_COMMIT"):
        return os.environ["REGROW_GIT_COMMIT"]
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def dvc_md5(path: str | Path) -> str:
    """DVC's hash of a directory (``<md5>.dir``): the id ``dvc.lock`` records for it and
    ``dvc checkout``/``dvc get`` fetch it by, computed with DVC's own library."""
    from dvc.fs import LocalFileSystem
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.memory import MemoryFileSystem

    odb = HashFileDB(MemoryFileSystem(), "/regrow-hash")
    _, _, obj = build(odb, str(Path(path).resolve()), LocalFileSystem(), "md5")
    return obj.hash_info.value


def snapshot_trainset(settings: Settings, push: bool = True) -> Snapshot:
    """Version the training set with DVC: ``dvc commit`` of the ``trainset`` stage (the
    snapshot goes into DVC's cache and dvc.lock) and ``dvc push`` to the default remote.

    Outside a DVC repository nothing is versioned and the result says so; the snapshot's
    DVC hash is computed either way (it is what lineage records).
    """
    path = Path(settings.resolve(settings.split.output_dir))
    load_trainset(path)  # a clear error when there is no snapshot
    md5 = dvc_md5(path)
    root = Path(settings.base_dir)
    if not (root / ".dvc").is_dir() or not (root / "dvc.yaml").is_file():
        logger.warning("%s is not a DVC repository: the snapshot %s is not versioned", root, md5)
        return Snapshot(md5, committed=False, pushed=False)
    run = [sys.executable, "-m", "dvc"]
    subprocess.run([*run, "commit", "--force", "trainset"], cwd=root, check=True)
    pushed = False
    if push:
        subprocess.run([*run, "push", "trainset"], cwd=root, check=True)
        pushed = True
    return Snapshot(md5, committed=True, pushed=pushed)


def lineage_tags(
    settings: Settings, path: Path, manifest: Mapping[str, Any], result: TrainResult,
    trigger: str, champion: Version | None,
) -> dict[str, Any]:  # fmt: skip
    """The lineage a registered version carries as tags: its mode and parent, the data
    window and table versions it was trained on, the snapshot's hashes and the code."""
    parent = result.facts.get("parent_version")
    in_a_row = 0
    if parent and champion:
        in_a_row = int(champion.tags.get("warm_starts_in_a_row", "0")) + 1
    return {
        "mode": result.mode,
        "mode_reason": result.mode_reason,
        "parent_version": parent,
        "warm_starts_in_a_row": in_a_row,
        "trigger": trigger,
        "cutoff_date": manifest["cutoff_date"],
        "train_window": f"{result.facts['train_first_event']}..{result.facts['train_last_event']}",
        "train_last_event": result.facts["train_last_event"],
        "delta_versions": json.dumps(manifest.get("tables", {}), sort_keys=True),
        "trainset_sha256": manifest["content_hash"],
        "dvc_md5": dvc_md5(path),
        "git_commit": git_commit(),
    }
