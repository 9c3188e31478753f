"""The folder a command starts in is data: a downloaded bundle or run folder holding ``safetensors.py``,
``onnxruntime.py`` or a ``hydra_plugins/`` package runs none of it, through the installed ``mixsep`` command or
``python -m mixsep.COMMAND``. Each test first shows that plain Python in that folder does run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import PROJECT_ROOT

pytestmark = pytest.mark.slow

MIXSEP = Path(sys.executable).parent / "mixsep"  # the console script the install puts beside python
BUNDLE = PROJECT_ROOT / "mixsep" / "pretrained" / "best_cpu_range"


def _planted(folder: Path) -> Path:
    """Modules that leave a marker file when imported, named like what mixsep imports."""
    marker = folder / "ran.txt"
    code = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    for name in ("safetensors.py", "onnxruntime.py", "csv.py"):  # csv: imported by importlib.metadata
        (folder / name).write_text(code)
    (folder / "hydra_plugins" / "planted").mkdir(parents=True)
    (folder / "hydra_plugins" / "planted" / "__init__.py").write_text(code)
    Image.fromarray(np.full((32, 32, 3), 90, dtype=np.uint8)).save(folder / "mix.png")
    return marker


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture
def downloaded(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "downloaded"
    folder.mkdir()
    marker = _planted(folder)
    shown = _run([sys.executable, "-c", "import safetensors, onnxruntime, csv"], folder)
    assert shown.returncode == 0 and marker.read_text() == "safetensors\nonnxruntime\ncsv\n"  # the attack, plainly
    marker.unlink()
    return folder, marker


@pytest.mark.parametrize("how", ["console script", "python -m"])
def test_separate_in_a_downloaded_folder_runs_none_of_its_modules(downloaded, how):
    folder, marker = downloaded
    command = [str(MIXSEP), "separate"] if how == "console script" else [sys.executable, "-m", "mixsep.separate"]
    for extra in ([], ["--onnx"]):
        out = folder / f"out{len(extra)}"
        done = _run([*command, "mix.png", "--model", str(BUNDLE), "--out", str(out), *extra], folder)
        assert done.returncode == 0, done.stderr[-2000:]
        assert (out / "mix.gray.png").is_file()
    assert not marker.exists(), marker.read_text()


@pytest.mark.parametrize("how", ["console script", "python -m"])
def test_a_hydra_plugins_folder_where_a_run_starts_is_not_imported(downloaded, how):
    folder, marker = downloaded
    # the old way: mixsep.run with the start folder on Python's path (as `python -m` left it) imports the package
    plain = "import runpy, sys; sys.argv[1:] = ['--cfg', 'job']; runpy.run_module('mixsep.run', run_name='__main__')"
    assert _run([sys.executable, "-c", plain], folder).returncode == 0
    assert "hydra_plugins.planted\n" in marker.read_text()
    marker.unlink()
    command = [str(MIXSEP), "run"] if how == "console script" else [sys.executable, "-m", "mixsep.run"]
    done = _run([*command, "--cfg", "job", "model=unet"], folder)
    assert done.returncode == 0 and "name: UNetSeparator" in done.stdout, done.stderr[-2000:]
    assert not marker.exists(), marker.read_text()


def test_the_console_script_names_its_commands_and_version_and_refuses_an_unknown_one(tmp_path):
    from importlib.metadata import version

    shown = _run([str(MIXSEP), "--version"], tmp_path)
    assert shown.returncode == 0 and shown.stdout.strip() == f"mixsep {version('mixsep')}"
    helped = _run([str(MIXSEP), "--help"], tmp_path)
    assert helped.returncode == 0 and all(f"  {c} " in helped.stdout for c in ("run", "separate", "export", "mix"))
    wrong = _run([str(MIXSEP), "sepparate", "x.png"], tmp_path)
    assert wrong.returncode != 0 and wrong.stderr.strip().startswith("mixsep: sepparate is not a command")
    assert "Traceback" not in wrong.stderr


def test_an_outputs_link_where_a_run_starts_is_refused_before_anything_is_written(tmp_path):
    elsewhere, start = tmp_path / "elsewhere", tmp_path / "downloaded"
    elsewhere.mkdir()
    start.mkdir()
    (start / "outputs").symlink_to(elsewhere)
    done = _run([str(MIXSEP), "run", "model=unet"], start)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("mixsep: outputs in the folder this command starts in is a symbolic link")
    assert list(elsewhere.iterdir()) == []  # Hydra wrote nothing through the link
