"""DDP through the command line: trainer=ddp on two CPU processes (every test pair scored once, its per-pair
scores gathered in the pairs' order), DDP inside a -m sweep (each job once, its children join it). The strategies
and device counts refused in one line are rows of tests/user_paths/test_bad_input.py."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from mixsep.evaluate import evaluate
from mixsep.models.metrics import TEST_KEYS
from tests.helpers import job_metrics, readme_command
from tests.helpers import run_cli as cli

pytestmark = pytest.mark.slow  # real command lines and DDP processes
ROOT = Path(__file__).resolve().parents[2]
CONF = str(ROOT / "conf")


def test_the_ddp_preset_on_two_cpu_processes_scores_every_test_pair_once(compose, tiny_overrides, tmp_path):
    run = tmp_path / "ddp"
    # the README's way to try trainer=ddp before a GPU node: gloo, and no SyncBatchNorm (GPU-only)
    command = shlex.split(readme_command("trainer=ddp trainer.accelerator=cpu"))[3:]
    # 11 pairs: 6 and 5 per process, in batches of 4 (4 + 2, 4 + 1): unequal shares and short last batches
    tiny_overrides = tiny_overrides + ["data.test_pairs=11", "data.eval_batch_size=4"]
    result = cli(command + tiny_overrides + [f"hydra.run.dir={run}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "run.log").read_text().count("sync_batchnorm: off on CPU") == 1
    m = json.loads((run / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["strategy"] == "DDPStrategy" and m["test_pairs"] == 11
    data = [o for o in tiny_overrides if o.startswith("data.")]
    single = evaluate(
        compose(
            "evaluate",
            data + [f"ckpt_path={m['checkpoint']}", "samples=4", "trainer.accelerator=cpu"],
            tmp_path / "eval",
        )
    )
    for key in TEST_KEYS:
        assert m[key] == pytest.approx(single[key], abs=1e-4)
    with np.load(run / "scores.npz") as ddp, np.load(tmp_path / "eval" / "scores.npz") as one:
        assert list(ddp["pair"]) == list(range(11))  # every test pair once, in the fixed order
        for key in ("mnist_psnr", "mnist_ssim", "cifar_psnr", "cifar_ssim"):
            np.testing.assert_allclose(ddp[key], one[key], atol=1e-3)  # pair by pair, as one process scores it
            assert float(ddp[key].mean()) == pytest.approx(m[f"test/{key}"], abs=1e-4)


def test_ddp_inside_a_multirun_runs_each_job_once(tiny_overrides, tmp_path):
    sweep = tmp_path / "sweep"
    result = cli(
        tiny_overrides + ["-m", "trainer.devices=2", "trainer.strategy=ddp", "seed=0,1", f"hydra.sweep.dir={sweep}"]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_metrics(sweep)
    assert sorted(jobs) == ["0_conv_dual", "1_conv_dual"]  # no sweep re-launched from a DDP child
    assert all(m["world_size"] == 2 for m in jobs.values())
    assert [m["seed"] for m in jobs.values()] == [0, 1]
    assert not list(tmp_path.glob("outputs")) and not (ROOT / "multirun").exists()
