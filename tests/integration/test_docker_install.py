"""docker/install.sh, the image's install steps, run outside Docker (no Docker engine here):
the locked environment synced into a venv shaped like the official Airflow image's
~/.local (made by ``python -m venv``, holding a package the lock does not list), and the
pinned jars linked from the machine's cache (``make setup`` fills it; a machine without
it downloads them once, ~700 MB)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "docker" / "install.sh"

pytestmark = pytest.mark.slow


def locked_version(name: str) -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return next(p["version"] for p in lock["package"] if p["name"] == name)


def image_like_venv(venv: Path) -> Path:
    """A venv as the official image's create_prod_venv.sh makes it (``python -m venv``),
    with a distribution uv.lock does not list (as the image's extra providers)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3.*/site-packages"))
    info = site / "stray_provider-9.9.9.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: stray-provider\nVersion: 9.9.9\n")
    (info / "RECORD").write_text(
        "stray_provider.py,,\nstray_provider-9.9.9.dist-info/METADATA,,\n"
        "stray_provider-9.9.9.dist-info/RECORD,,\n"
    )
    (site / "stray_provider.py").write_text("STRAY = True\n")
    return site / "stray_provider.py"


def run_install(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("REGROW_JARS_DIR", "VIRTUAL_ENV")}
    return subprocess.run(
        ["bash", str(INSTALL), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, Path, subprocess.CompletedProcess[str]]:
    prefix = tmp_path_factory.mktemp("image")
    stray = image_like_venv(prefix / "venv")
    result = run_install("--prefix", str(prefix))
    return prefix / "venv", prefix / "jars", stray, result


def venv_python(venv: Path, code: str, **env: str) -> str:
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_installs_the_locked_set_into_the_existing_venv(installed):
    venv, _, stray, result = installed
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    # The venv that was there is kept (its interpreter), and what the lock lacks is gone.
    assert not stray.exists()
    assert "- stray-provider==9.9.9" in result.stderr + result.stdout
    code = (
        "import importlib.metadata as m, regrow, airflow, pyspark; "
        "names = [d.metadata['Name'] for d in m.distributions()]; "
        "print(airflow.__version__, pyspark.__version__, names.count('apache-airflow'), "
        "'stray-provider' in names, regrow.__file__)"
    )
    airflow_v, spark_v, n_airflow, stray_left, regrow_file = venv_python(venv, code).split()
    assert (airflow_v, spark_v) == (locked_version("apache-airflow"), locked_version("pyspark"))
    assert n_airflow == "1" and stray_left == "False"
    # Editable: the DAG helpers find jobs/ beside include/ of this checkout.
    assert Path(regrow_file).is_relative_to(ROOT / "include")


def test_leaves_the_dev_group_out(installed):
    venv, *_ = installed
    out = venv_python(
        venv, "import importlib.util as u; print([n for n in ('pytest', 'ruff') if u.find_spec(n)])"
    )
    assert out == "[]"


def test_airflow_runs_from_the_venv(installed, tmp_path):
    venv, *_ = installed
    result = subprocess.run(
        [str(venv / "bin" / "airflow"), "version"],
        env={**os.environ, "AIRFLOW_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == locked_version("apache-airflow")


def test_the_jars_are_in_place_for_delta_spark(installed):
    venv, jars, *_ = installed
    out = venv_python(
        venv,
        "from regrow.orchestration import jars; "
        "print(len(jars.present(jars.DELTA)), len(jars.present(jars.S3A)))",
        REGROW_JARS_DIR=str(jars),
    )
    assert out == "5 3"


def test_a_second_run_changes_nothing(installed):
    venv, jars, _, _ = installed
    before = sorted(p.name for p in jars.iterdir())
    result = run_install("--venv", str(venv), "--jars", str(jars))
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in jars.iterdir()) == before
    assert "fetching" not in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "no target: use --prefix DIR"),
        (("--bogus",), "unknown argument '--bogus'"),
        (("--venv", "/nonexistent-x/venv"), "no jars directory: add --jars DIR, or --no-jars"),
    ],
)
def test_a_wrong_call_is_one_line(args, message):
    result = run_install(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"install.sh: {message}"), result.stderr


def test_without_uv_it_says_how_to_get_it(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "env"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    result = run_install(
        "--prefix", str(tmp_path / "x"), PATH=str(bin_dir), HOME=str(tmp_path), UV=""
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "install.sh: uv not found: install it (python3 -m pip install uv) or set UV=/path/to/uv"
    )
