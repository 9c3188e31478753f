"""Runs that never collide, never vanish and say where they came from: real processes started in the same
instant, SIGKILL at random moments (mid-save included), a killed job shown lost and resumed, the commit recorded."""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mixsep.record import status as jobs
from mixsep.training.checkpoints import AtomicCheckpointIO, newest_resumable
from tests.helpers import PROJECT_ROOT, run_cli_here


def _start(args: list[str], cwd: Path, **env) -> subprocess.Popen:
    multirun = ["-m"] if "-m" in args else []
    return subprocess.Popen(
        [sys.executable, "-m", "mixsep.run", *multirun, *(a for a in args if a != "-m")],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HYDRA_FULL_ERROR": "0", **env},
    )


def _status(folder: Path) -> dict:
    return json.loads((folder / "status.json").read_text())


@pytest.mark.slow
def test_runs_started_in_the_same_instant_each_get_their_own_folder(compose, tiny_overrides, tmp_path):
    """Two runs of one experiment started together, from a shell loop's point of view: two folders, each run
    completed with its own seed's metrics. A sweep's folder takes the same unique part."""
    base = [*tiny_overrides, "experiment_name=together"]
    procs = [_start([*base, f"seed={seed}"], tmp_path) for seed in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * 2, [err[-2000:] for _, err in outs]
    singles = sorted((tmp_path / "outputs" / "together").iterdir())
    assert len(singles) == 2
    seeds = []
    for folder in singles:
        assert _status(folder)["status"] == "completed", folder
        metrics = json.loads((folder / "metrics.json").read_text())
        config = (folder / ".hydra" / "overrides.yaml").read_text()
        assert f"seed={metrics['seed']}" in config  # the folder holds the metrics of the run that made it
        assert "-m mixsep.run" in metrics["provenance"]["command"]
        assert f"seed={metrics['seed']}" in metrics["provenance"]["command"]
        assert metrics["provenance"]["git_commit"] == _status(folder)["provenance"]["git_commit"]
        seeds.append(metrics["seed"])
    assert sorted(seeds) == [0, 1]
    unique = {folder.name.rsplit("_", 1)[1] for folder in singles}
    assert len(unique) == 2 and all(re.fullmatch("[0-9a-f]{6}", part) for part in unique)
    sweep_dir = compose("config", tiny_overrides, tmp_path / "c").hydra.sweep.dir
    assert re.fullmatch(r"outputs/multirun/\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[0-9a-f]{6}", sweep_dir)


@pytest.mark.slow
def test_a_killed_job_is_lost_in_the_report_and_resumes_and_a_live_one_keeps_its_folder(
    tiny_overrides, tiny_root, tmp_path, capfd
):
    from tests.helpers import report_main

    folder = tmp_path / "run"
    long_run = [
        *(o for o in tiny_overrides if not o.startswith("trainer.max_epochs")),
        "trainer.max_epochs=400",
        f"hydra.run.dir={folder}",
        "callbacks.heartbeat.every_seconds=0",
    ]
    first = _start(long_run, tmp_path)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # training, with a checkpoint to resume from
        status = _status(folder) if (folder / "status.json").exists() else {}
        if status.get("step", 0) >= 12 and (folder / "checkpoints" / "last.ckpt").exists():
            break
        assert first.poll() is None, first.communicate()[1][-2000:]
        time.sleep(0.2)
    else:
        pytest.fail("the first run never reached step 12")

    # the same folder while the first trains: refused in one line (the command in this process)
    second = run_cli_here(long_run, capfd)
    err = second.stderr
    assert second.returncode != 0
    lines = [line for line in err.splitlines() if line.startswith("mixsep: ")]
    assert len(lines) == 1 and lines[0].startswith("mixsep: the run folder") and "Traceback" not in err, err[-2000:]
    assert f"pid {first.pid} on host {socket.gethostname()}" in lines[0]
    assert _status(folder)["status"] == "running" and first.poll() is None  # the live run untouched

    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    record = _status(folder)
    assert record["status"] == "running" and jobs.effective_status(record) == "lost"
    report = report_main(tmp_path, tmp_path, tiny_root)
    assert f"- {folder}: lost at step {record['step']}" in report

    third = run_cli_here([*long_run, f"trainer.max_steps={record['step'] + 8}"], capfd)  # the same run again
    assert third.returncode == 0, third.stderr[-2000:]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["resumed_from"] and Path(metrics["resumed_from"]).parent == folder / "checkpoints"
    assert _status(folder)["status"] == "completed"


WEIGHTS = torch.arange(2_000_000, dtype=torch.float32)  # 8 MB, made before any fork (no parallel op in a child)


def _save_forever(path: Path, version: int) -> None:
    """A forked child: saves an 8 MB checkpoint through the trainer's CheckpointIO plugin over and over, each
    one numbered, until it is killed; it never returns into the test process."""
    try:
        io = AtomicCheckpointIO()
        while True:
            version += 1
            io.save_checkpoint(
                {"version": version, "state_dict": {"w": WEIGHTS, "stamp": torch.full((3,), version)}}, path
            )
    finally:
        os._exit(1)


@pytest.mark.slow
def test_checkpoints_survive_sigkill_at_random_moments_mid_save(tmp_path):
    """SIGKILL at 20 random moments while a process saves an 8 MB checkpoint again and again (most kills land
    mid-save: a save takes longer than the gap between saves): after every kill the file loads, whole, with a
    version no older than before, and the next process goes on from it."""
    path, rng, version = tmp_path / "last.ckpt", random.Random(0), 0
    for _ in range(20):
        child = os.fork()
        if child == 0:
            _save_forever(path, version)
        time.sleep(rng.uniform(0.02, 0.5))
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        if not path.exists():
            continue
        ckpt = torch.load(path, weights_only=True)
        assert ckpt["version"] >= version
        assert torch.equal(ckpt["state_dict"]["w"], WEIGHTS)
        assert ckpt["state_dict"]["stamp"].tolist() == [ckpt["version"]] * 3
        version = ckpt["version"]
    assert version > 0


def test_a_torn_last_checkpoint_resumes_from_the_newest_whole_one(compose, tiny_overrides, tmp_path, caplog):
    from mixsep.errors import CheckpointError
    from mixsep.run import train

    out = tmp_path / "run"
    train(compose("config", [*tiny_overrides, "trainer.max_epochs=2"], out))
    ckpts = out / "checkpoints"
    last = ckpts / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # what a kill mid-write leaves behind
    cfg = compose("config", [*tiny_overrides, "trainer.max_epochs=3"], out)
    with caplog.at_level("INFO", logger="mixsep"):
        chosen = newest_resumable(ckpts, cfg.model)
    assert Path(chosen).name.startswith("best") and "last.ckpt" in caplog.text and "newest best" in caplog.text
    metrics = train(cfg)
    assert Path(metrics["resumed_from"]).name.startswith("best") and metrics["epochs"] == 3
    for ckpt in ckpts.glob("*.ckpt"):
        ckpt.write_bytes(b"torn")
    with pytest.raises(CheckpointError, match="no checkpoint in .* loads"):
        newest_resumable(ckpts, cfg.model)


def test_the_recorded_commit_is_heads_and_a_dirty_tree_is_marked(tmp_path, monkeypatch):
    from mixsep.record import provenance

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    provenance.code_version.cache_clear()
    record = provenance.provenance()
    assert record["git_commit"] == head.stdout.strip()
    assert record["torch_version"] == torch.__version__.split("+")[0] or record["torch_version"] == torch.__version__
    assert record["command"] == shlex.join(sys.orig_argv)  # this process's command line, as typed

    repo = tmp_path / "repo"
    repo.mkdir()
    git = lambda *a: subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True)
    git("init", "-q")
    (repo / "f.txt").write_text("a")
    git("add", "f.txt")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    monkeypatch.setattr(provenance, "PROJECT_ROOT", repo)
    provenance.code_version.cache_clear()
    assert provenance.code_version()["git_dirty"] is False
    (repo / "f.txt").write_text("b")
    provenance.code_version.cache_clear()
    clean_commit = provenance.code_version()
    assert clean_commit["git_dirty"] is True and provenance.short_commit(clean_commit).endswith("+dirty")
    monkeypatch.setattr(provenance, "PROJECT_ROOT", tmp_path / "nowhere")
    provenance.code_version.cache_clear()
    assert (
        provenance.code_version()["git_commit"] is None
        and "not a git checkout" in provenance.code_version()["git_note"]
    )
    provenance.code_version.cache_clear()


def test_wandb_with_a_key_but_no_server_goes_offline_within_its_timeout(compose, tiny_overrides, tmp_path, monkeypatch):
    from mixsep.run import train
    from mixsep.training.loggers import WANDB_REACH_SECONDS

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("WANDB_MODE", "")  # unset for the run; restored after the test
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    from mixsep.training.loggers import finish_wandb

    start = time.monotonic()
    try:
        metrics = train(compose("config", [*tiny_overrides, "logger=wandb"], tmp_path / "run"))
    finally:
        finish_wandb(failed=False)  # as the job's record does: no W&B run left open for the next test
    assert time.monotonic() - start < 120 and os.environ["WANDB_MODE"] == "offline"
    assert metrics["global_step"] > 0 and list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert WANDB_REACH_SECONDS <= 10


def test_the_folder_lock_never_writes_through_a_link(tmp_path):
    """A run folder from elsewhere whose .mixsep.lock links to another file: refused, that file untouched."""
    from mixsep.errors import ConfigError

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".mixsep.lock").symlink_to(victim)
    with pytest.raises(ConfigError, match="cannot write to the run folder"):
        jobs.FolderLock(run).acquire()
    assert victim.read_text() == "keep me"
