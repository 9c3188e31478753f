"""Sweeps on real clusters: a Ray cluster started with ``ray start`` and a single-node SLURM cluster
(Debian's slurmctld/slurmd/munge, started by tests/cluster/slurm_up.sh), driven through the README's
command lines. Skipped, with the reason, only where the cluster cannot be started here."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def job_metrics(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))}


def overlap(a: dict, b: dict) -> bool:
    a0, a1, b0, b1 = (datetime.fromisoformat(m[k]) for m in (a, b) for k in ("train_start", "train_end"))
    return a0 < b1 and b0 < a1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- Ray
@pytest.fixture(scope="module")
def ray_cluster():
    """A real Ray head node: ``ray start --head`` with two (declared) GPUs; ``ray stop`` afterwards."""
    ray_cli = Path(sys.executable).with_name("ray")
    if subprocess.run([ray_cli, "status"], capture_output=True).returncode == 0:
        pytest.skip("a Ray cluster is already running on this machine; stop it (ray stop) to run this test")
    port = free_port()
    started = subprocess.run(
        [ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2", "--num-gpus=2"]
        + ["--include-dashboard=false", "--disable-usage-stats"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        if started.returncode != 0:
            pytest.skip(f"ray start failed here: {started.stderr.strip().splitlines()[-1:]}")
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120)


def test_sweep_joins_a_running_ray_cluster(ray_cluster, tiny_overrides, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        tiny_overrides
        + [
            "-m",
            "hydra/launcher=gpus",
            "hydra.launcher.ray.init.address=auto",  # the README's command
            "hydra.launcher.ray.remote.num_cpus=1",
            "seed=0,1",
            "trainer.max_epochs=2",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = list(job_metrics(sweep).values())
    assert len(jobs) == 2
    port = ray_cluster.rsplit(":", 1)[1]
    for m in jobs:  # each job ran in the cluster started above, on one of its two GPUs
        assert m["ray_gcs_address"].endswith(f":{port}")
        assert m["cuda_visible_devices"] in ("0", "1")
    assert overlap(*jobs), "the cluster has two GPUs: both jobs train at once"
    assert jobs[0]["cuda_visible_devices"] != jobs[1]["cuda_visible_devices"]
