"""Sweeps on Ray: Ray's launcher on this machine and a Ray cluster started with ``ray start``, driven through the
README's command lines."""

from __future__ import annotations

import itertools
import math
import os
import shlex
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers import job_metrics, readme_command, run_cli

pytestmark = pytest.mark.slow  # pytest-xdist --dist loadfile: this file's tests run on one worker, one at a time

# Ray starts its workers at nice 15; beside the other tests on two cores a job would then wait for all of them
AT_NORMAL_PRIORITY = {"RAY_worker_niceness": "0"}


def overlap(a: dict, b: dict) -> bool:
    a0, a1, b0, b1 = (datetime.fromisoformat(m[k]) for m in (a, b) for k in ("train_start", "train_end"))
    return a0 < b1 and b0 < a1


# --------------------------------------------------------------------------- Ray
def test_the_gpus_launcher_starts_ray_here_and_gives_the_job_one_of_its_gpus(tiny_overrides, tmp_path):
    """``hydra/launcher=gpus`` on one machine: the launcher starts Ray itself, here with two pretend GPUs
    (``hydra.launcher.ray.init.num_gpus=2``), and the job trains on one of them. Several jobs sharing the GPUs
    and queueing for them are the cluster test's below (the same Ray scheduling)."""
    sweep = tmp_path / "sweep"
    result = run_cli(
        tiny_overrides
        + [
            "-m",
            "hydra/launcher=gpus",
            "hydra.launcher.ray.init.num_gpus=2",
            "hydra.launcher.ray.init.num_cpus=2",
            "hydra.launcher.ray.remote.num_cpus=1",
            "seed=0",
            f"hydra.sweep.dir={sweep}",
        ],
        **AT_NORMAL_PRIORITY,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (job,) = job_metrics(sweep).values()
    assert job["cuda_visible_devices"] in ("0", "1")  # exactly one of the two GPUs Ray was told of
    assert job["world_size"] == 1 and math.isfinite(job["test/mnist_psnr"]) and job["ray_gcs_address"]


@pytest.fixture(scope="module")
def ray_cluster():
    """A real Ray head node: ``ray start --head`` with two (declared) GPUs; ``ray stop`` afterwards."""
    ray_cli = Path(sys.executable).with_name("ray")
    if subprocess.run([ray_cli, "status"], capture_output=True).returncode == 0:
        pytest.skip("a Ray cluster is already running on this machine; stop it (ray stop) to run this test")
    command = readme_command("ray start --head")  # --port=6379 --num-gpus=2, as the README writes it
    port = command.split("--port=")[1].split()[0]
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", int(port))) == 0:
            pytest.skip(f"port {port} is taken here: the README's head node cannot start")
    started = subprocess.run(
        [ray_cli, *shlex.split(command)[1:], "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **AT_NORMAL_PRIORITY},
    )
    try:
        if started.returncode != 0:
            pytest.skip(f"ray start failed here: {started.stderr.strip().splitlines()[-1:]}")
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120)


def test_a_sweep_on_a_running_ray_cluster_gives_each_job_its_own_gpu_and_queues_the_rest(
    ray_cluster, tiny_overrides, tmp_path
):
    """The README's sweep on the head node started above (``ray start --head --num-gpus=2``), with three jobs on
    its two GPUs: every job runs in that cluster on a GPU of its own, two train at once and the third queues."""
    sweep = tmp_path / "sweep"
    command = readme_command("hydra.launcher.ray.init.address=auto")  # model=unet seed=0,1
    assert "seed=0,1" in command
    command = command.replace("seed=0,1", "seed=0,1,2")
    # two jobs at once on 2 cores, each training long enough (40 steps, ~6 s alone) for the two to overlap
    size = ["hydra.launcher.ray.remote.num_cpus=1", "data.train_pairs=160", "trainer.max_epochs=2"]
    size.append(f"hydra.sweep.dir={sweep}")
    result = run_cli(shlex.split(command)[3:] + [o for o in tiny_overrides if "max_epochs" not in o] + size)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = list(job_metrics(sweep).values())
    assert len(jobs) == 3
    port = ray_cluster.rsplit(":", 1)[1]
    for m in jobs:  # each job ran in the cluster started above, on exactly one of its two GPUs
        assert m["ray_gcs_address"].endswith(f":{port}")
        assert m["cuda_visible_devices"] in ("0", "1")
        assert m["world_size"] == 1 and math.isfinite(m["test/mnist_psnr"])
    together = [(a, b) for a, b in itertools.combinations(jobs, 2) if overlap(a, b)]
    assert together, "the cluster has two GPUs: two jobs train at once"
    assert all(a["cuda_visible_devices"] != b["cuda_visible_devices"] for a, b in together)
    spans = [tuple(datetime.fromisoformat(m[k]) for k in ("train_start", "train_end")) for m in jobs]
    moments = sorted(t for span in spans for t in span)
    assert max(sum(s0 <= t < s1 for s0, s1 in spans) for t in moments) == 2  # two GPUs: never three at once
