"""benchmarks/gpu_check.py runs to the end (on the CPU here, as CI checks it) and prints every section."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import PROJECT_ROOT, run_here


@pytest.mark.slow
def test_gpu_check_runs_on_a_cpu_with_a_note(tiny_root, tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("MIXSEP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MIXSEP_DATA_ROOT", os.environ.get("MIXSEP_DATA_ROOT", ""))  # the script sets it: restored
    monkeypatch.chdir(PROJECT_ROOT)  # the script changes into the project: restored
    run = run_here(["python", "benchmarks/gpu_check.py", "--data", str(tiny_root), "--quick"], capfd)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "torch " in out and "CUDA" in out
    if "GPU: none" in out:
        assert "note: no CUDA GPU here" in out and "skipped" in out.split("== GPU-only tests")[1]
    for model in ("best_gpu_unet", "conv_dual"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {model} |"))
        mixsep, per_item = (float(row.split("|")[i]) for i in (3, 4))
        assert mixsep > 0 and per_item > 0 and "x |" in row
    assert "db_per_minute=" in out and "gpu_check_seconds=" in out


def test_gpu_check_names_a_data_folder_without_the_data(tmp_path):
    run = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--data", str(tmp_path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert (
        run.stderr.strip()
        == f"mixsep: --data {tmp_path} holds no MNIST/raw: pass the data folder of gpu_bundle.sh (DIR/data)"
    )
