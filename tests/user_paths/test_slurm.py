"""Sweeps on a single-node SLURM cluster (Debian's slurmctld/slurmd/munge, started by tests/cluster/slurm_up.sh),
driven through the README's command lines. Skipped, with the reason, only where the cluster cannot be started here."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mixsep.run import train as mixsep_train
from tests.helpers import PROJECT_ROOT, job_metrics, readme_command, wandb_records

pytestmark = pytest.mark.slow  # pytest-xdist --dist loadfile: this file's tests run on one worker, one at a time


SLURM_UP = PROJECT_ROOT / "tests" / "cluster" / "slurm_up.sh"


@pytest.fixture(scope="module")
def slurm_cluster():
    """A real single-node SLURM cluster with two (dummy) GPUs, started by tests/cluster/slurm_up.sh."""
    up = subprocess.run(["bash", SLURM_UP], capture_output=True, text=True, timeout=600)
    if up.returncode != 0:
        pytest.skip(f"no SLURM cluster here: {up.stderr.strip().splitlines()[-1:]}")
    return socket.gethostname()


def slurm_overrides(sweep: Path, timeout_min: int = 5) -> list[str]:
    return [
        "-m",
        "hydra/launcher=slurm",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=3",
        f"hydra.launcher.timeout_min={timeout_min}",
        "hydra.launcher.setup=['export OMP_NUM_THREADS=1']",
        f"hydra.sweep.dir={sweep}",
    ]


class StatusWatch:
    """Reads each job's status.json while the sweep runs: every distinct state a job passed through."""

    def __init__(self, sweep: Path) -> None:
        self.sweep, self.seen, self.together = sweep, {}, []

    def poll(self) -> None:
        now = {}
        for path in self.sweep.glob("*/status.json"):
            try:
                s = json.loads(path.read_text())
            except (OSError, ValueError):  # replaced while read
                continue
            now[path.parent.name] = s
            state = (s["status"], s.get("reason"), s.get("requeues"))
            states = self.seen.setdefault(path.parent.name, [])
            if not states or states[-1] != state:
                states.append(state)
        running = [s for s in now.values() if s["status"] == "running"]
        if len(running) == 2:
            self.together.append(tuple(sorted((s["slurm_job_id"], s["cuda_visible_devices"]) for s in running)))


def run_sweep(args: list[str], watch: StatusWatch, during=None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m mixsep.run -m ...`` in the background, watching the jobs' statuses; ``during(watch)`` is
    called on every poll (e.g. to pre-empt a job)."""
    import time

    multirun = ["-m"] if "-m" in args else []
    cmd = [sys.executable, "-m", "mixsep.run", *multirun, *[a for a in args if a != "-m"]]
    with subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        deadline = time.monotonic() + timeout
        while p.poll() is None and time.monotonic() < deadline:
            watch.poll()
            if during is not None:
                during(watch)
            time.sleep(0.25)
        if p.poll() is None:
            subprocess.run(["scancel", "--name=submitit"], capture_output=True)
            p.kill()
        out, err = p.communicate()
    watch.poll()
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def test_slurm_sweep_survives_time_limits_and_preemption(slurm_cluster, compose, tiny_overrides, tmp_path):
    """Two jobs at once on the two GPUs; each allocation (2 minutes) is shorter than the one epoch of
    training, so every job is re-queued at its time limit; job 0 is also pre-empted (``scontrol requeue``) as it
    starts, job 1 in mid-training. Both complete with every step done, and job 0 ends where an
    uninterrupted run of the same seed (here, unpaced) ends."""
    train = tiny_overrides + [
        "model=unet",
        "model.net.widths=[8,16,32]",
        "trainer.precision=32-true",
        "data.train_pairs=3200",  # 400 steps in one epoch
        "trainer.log_every_n_steps=50",
        "callbacks.timed_checkpoint=null",
    ]
    # ~2.8 minutes of training, asleep most of it: each allocation trains far longer than it takes to start (every
    # start costs CPU seconds: on a loaded machine 1-minute allocations spent most of themselves starting). slurmctld
    # enforces time limits on its periodic pass (up to ~30 s late), so a job pre-empted as it starts must still need
    # more than 2.5 minutes, or its next allocation can finish before its limit and it is never re-queued there
    paced = ["+callbacks.pace._target_=tests.helpers.PacedSteps", "+callbacks.pace.seconds=0.42"]
    sweep = tmp_path / "sweep"
    watch = StatusWatch(sweep)
    preempted = {}

    def preempt(watch: StatusWatch) -> None:
        """Job 0 as it starts (loading data, starting W&B: no Trainer runs yet), job 1 in mid-training (its
        heartbeat has a step), each once (``scontrol requeue``)."""
        for job, in_training in (("0", False), ("1", True)):
            path = next(sweep.glob(f"{job}_*/status.json"), None)
            if job in preempted or path is None:
                continue
            try:
                status = json.loads(path.read_text())
            except (OSError, ValueError):  # replaced while read
                continue
            if status["status"] == "running" and ("step" in status) == in_training:
                r = subprocess.run(["scontrol", "requeue", status["slurm_job_id"]], capture_output=True, text=True)
                if r.returncode == 0:  # else its time limit re-queued it first: try in its next allocation
                    preempted[job] = status["slurm_job_id"]

    # the README's command (partition gpu, model=unet seed=0,1), with 2-minute allocations instead of 120
    command = shlex.split(readme_command("hydra/launcher=slurm hydra.launcher.partition=gpu"))[3:]
    result = run_sweep(
        command
        + train
        + paced
        + slurm_overrides(sweep, timeout_min=2)[2:]
        + ["hydra.launcher.signal_delay_s=5", "hydra.launcher.max_num_timeout=12", "logger=wandb"],
        watch,
        during=preempt,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_metrics(sweep)
    assert sorted(jobs) == ["0_unet", "1_unet"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the jobs (OMP_NUM_THREADS=1): the same arithmetic, step by step
    try:
        ref = mixsep_train(compose("config", train + ["seed=0"], tmp_path / "uninterrupted"))
    finally:
        torch.set_num_threads(threads)

    # two jobs at once, each on its own GPU and SLURM job
    assert watch.together, f"the two jobs never ran at the same time: {watch.seen}"
    (id_a, gpu_a), (id_b, gpu_b) = watch.together[0]
    assert id_a != id_b and {gpu_a, gpu_b} == {"0", "1"}

    for name, m in jobs.items():
        states = watch.seen[name]
        assert all(s[0] != "failed" for s in states), states
        assert states[-1][0] == "completed"
        assert ("requeued", "timeout") in {s[:2] for s in states}, f"{name} was never re-queued at its time limit"
        assert m["global_step"] == ref["global_step"] == 400  # every training step done, none twice
        # one W&B run per job across all its allocations, none of them marked failed
        run_id = (sweep / name / "wandb_id.txt").read_text().strip()
        sessions = sorted((sweep / name / "wandb").glob("offline-run-*"))
        assert len(sessions) >= 2 and all(s.name.endswith(run_id) for s in sessions)
        for session in sessions:
            exits = [r.exit for r in wandb_records(next(session.glob("*.wandb"))) if r.HasField("exit")]
            assert all(e.exit_code == 0 for e in exits), (session, exits)
    assert sorted(preempted) == ["0", "1"], preempted
    for name in jobs:  # recorded, not left to be killed: pre-empted while starting as well as while training
        assert ("requeued", "preemption") in {s[:2] for s in watch.seen[name]}, watch.seen[name]
    # re-queues lose seconds, not results: job 0 ends where the uninterrupted run ends
    for key in ("test/mnist_psnr", "test/cifar_psnr"):
        assert abs(jobs["0_unet"][key] - ref[key]) < 0.05, (key, jobs["0_unet"][key], ref[key])
    print(
        f"SLURM re-queues: {watch.seen}; job 0 {jobs['0_unet']['test/mnist_psnr']:.3f} dB vs uninterrupted "
        f"{ref['test/mnist_psnr']:.3f} dB"
    )
