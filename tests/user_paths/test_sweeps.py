"""Sweeps on Hydra's own engines (basic / Ray launchers, Optuna sweeper), W&B per job, DDP, auto-resume.

These run the real command line (``python -m mixsep.run -m ...``) on the tiny datasets, on the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixsep.models.metrics import TEST_KEYS
from mixsep.run import train
from tests.helpers import run_cli, run_cli_here

pytestmark = pytest.mark.slow  # real command lines, launchers and DDP processes
ROOT = Path(__file__).resolve().parents[2]
CONF = str(ROOT / "conf")


def status(folder: Path) -> dict:
    return json.loads((folder / "status.json").read_text())


def test_optuna_search_optimises_the_validation_objective(tiny_overrides, tmp_path, capfd):
    sweep, db = tmp_path / "optuna", tmp_path / "study.db"
    overrides = [o for o in tiny_overrides if not o.startswith("data.batch_size")]
    result = run_cli_here(
        overrides
        + [
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=3",
            "data.batch_size=choice(4,8)",
            f"hydra.sweeper.storage=sqlite:///{db}",
            "hydra.sweeper.study_name=t",
            f"hydra.sweep.dir={sweep}",
        ],
        capfd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    import optuna

    trials = optuna.load_study(study_name="t", storage=f"sqlite:///{db}").trials
    assert len(trials) == 3
    for trial in trials:
        m = json.loads((sweep / str(trial.number) / "metrics.json").read_text())
        assert m["model"] == "unet" and m["optimized_metric"] == "val/psnr"
        assert trial.value == pytest.approx(m["objective"], abs=1e-9)
        assert m["objective"] == pytest.approx((m["val/mnist_psnr"] + m["val/cifar_psnr"]) / 2, abs=1e-4)
        assert all(abs(trial.value - m[k]) > 1e-6 for k in TEST_KEYS)  # never a test score

    # the stored study resumes: a total of 4 trials asks for one more, numbered after the others
    again = run_cli_here(
        overrides
        + [
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=4",
            "data.batch_size=choice(4,8)",
            f"hydra.sweeper.storage=sqlite:///{db}",
            "hydra.sweeper.study_name=t",
            f"hydra.sweep.dir={tmp_path / 'resumed'}",
        ],
        capfd,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(optuna.load_study(study_name="t", storage=f"sqlite:///{db}").trials) == 4
    assert sorted(p.name for p in (tmp_path / "resumed").iterdir() if p.is_dir()) == ["3"]


def test_optuna_search_spaces_follow_hydra_sweep_syntax():
    import optuna.distributions as d
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.mixsep_plugins.optuna_sweeper import distribution

    parse = OverridesParser.create().parse_override
    assert distribution(parse("model.lr=tag(log, interval(3e-4, 1e-2))")) == d.FloatDistribution(3e-4, 1e-2, log=True)
    assert distribution(parse("data.batch_size=choice(64, 128)")) == d.CategoricalDistribution([64, 128])
    assert distribution(parse("model.net.width=range(16, 65, 16)")) == d.IntDistribution(16, 64, step=16)
    assert distribution(parse("x=interval(1, 5)")) == d.FloatDistribution(1.0, 5.0)
    assert distribution(parse("x=tag(int, log, interval(1, 64))")) == d.IntDistribution(1, 64, log=True)


def test_a_failing_job_does_not_stop_the_sweep(tiny_overrides, tmp_path, capfd):
    sweep = tmp_path / "sweep"
    result = run_cli_here(tiny_overrides + ["-m", "model.loss=mse,bogus,l1", f"hydra.sweep.dir={sweep}"], capfd)
    assert result.returncode != 0
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 3
    good = [sweep / j for j in jobs if (sweep / j / "metrics.json").exists()]
    assert len(good) == 2 and all(status(g)["status"] == "completed" for g in good)
    bad = next(sweep / j for j in jobs if not (sweep / j / "metrics.json").exists())
    record = status(bad)
    assert record["status"] == "failed" and record["user_fixable"] and "model.loss='bogus'" in record["error"]
    assert record["multirun"] and "model.loss=bogus" in record["overrides"]


def test_a_search_goes_on_after_a_failed_trial_within_its_failure_rate(tiny_overrides, tmp_path):
    """max_failure_rate is a share of the trials the sweep runs: an early failure does not end it; once more than
    that share failed, the sweep ends in one line."""
    sweep = tmp_path / "sweep"
    overrides = ["hparams_search=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.max_failure_rate=0.9"]
    overrides += ["model.loss=choice(bogus)", f"hydra.sweep.dir={sweep}"]
    result = run_cli(tiny_overrides + overrides)  # its own process: Optuna's log handler on its own stderr
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("mixsep: 3 of this sweep's 3 Optuna trials failed")
    jobs = [p for p in sweep.iterdir() if p.is_dir()]
    assert len(jobs) == 3 and all(status(job)["status"] == "failed" for job in jobs)


def test_a_single_run_prints_a_user_error_in_one_line(tiny_overrides, tmp_path, capfd):
    result = run_cli_here(tiny_overrides + ["model.loss=bogus", f"hydra.run.dir={tmp_path / 'run'}"], capfd)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("mixsep: model.loss='bogus'")
    assert status(tmp_path / "run")["status"] == "failed"


def offline_wandb(monkeypatch, folder: Path) -> None:
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(name, str(folder))
    monkeypatch.setenv("WANDB_MODE", "offline")


def test_wandb_multirun_gives_every_job_its_own_run_in_the_sweep_group(tiny_overrides, tmp_path, capfd, monkeypatch):
    sweep = tmp_path / "sweep"
    offline_wandb(monkeypatch, tmp_path)
    result = run_cli_here(
        tiny_overrides
        + ["-m", "logger=wandb", "model=conv_dual,unet", "logger.wandb.tags=[t1]", f"hydra.sweep.dir={sweep}"],
        capfd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ids = []
    for job in sorted(p for p in sweep.iterdir() if p.is_dir()):
        run_id = (job / "wandb_id.txt").read_text().strip()
        runs = list((job / "wandb").glob(f"offline-run-*-{run_id}"))
        assert len(runs) == 1, list((job / "wandb").iterdir())  # this job's run lives in this job's folder
        record = next(runs[0].glob("*.wandb")).read_bytes()
        assert sweep.name.encode() in record  # the group: the sweep's folder name
        # offline, the run's config lives in its record: the whole composed config, as JSON values
        assert b'"net":{"name":"' in record and b'"val_pairs":8' in record
        assert b'"max_epochs":1' in record and b'"tags":["t1"]' in record
        ids.append(run_id)
    assert len(set(ids)) == 2


def test_a_resumed_run_continues_the_same_wandb_run(tiny_overrides, tmp_path, capfd, monkeypatch):
    run = tmp_path / "run"
    offline_wandb(monkeypatch, tmp_path)
    args = tiny_overrides + ["logger=wandb", f"hydra.run.dir={run}"]
    assert run_cli_here(args, capfd).returncode == 0
    first = (run / "wandb_id.txt").read_text().strip()
    again = run_cli_here([a for a in args if a != "trainer.max_epochs=1"] + ["trainer.max_epochs=2"], capfd)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (run / "wandb_id.txt").read_text().strip() == first
    assert json.loads((run / "metrics.json").read_text())["resumed_from"].endswith("last.ckpt")
    assert len(list((run / "wandb").glob(f"offline-run-*-{first}"))) == 2  # two sessions, one W&B run


def test_slurm_launcher_composes_with_its_keys(compose, tmp_path):
    cfg = compose("config", ["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], tmp_path)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    for key in (
        "gpus_per_node",
        "tasks_per_node",
        "cpus_per_task",
        "mem_gb",
        "timeout_min",
        "array_parallelism",
        "max_num_timeout",
        "account",
        "setup",
    ):
        assert key in launcher
    assert launcher.max_num_timeout > 0 and cfg.ckpt_path == "auto"
    ray = compose("config", ["hydra/launcher=gpus"], tmp_path).hydra.launcher
    assert ray.ray.remote.num_gpus == 1 and ray.ray.remote.max_calls == 1


def test_the_same_command_in_the_same_folder_resumes_and_matches_an_uninterrupted_run(
    compose, tiny_overrides, tmp_path
):
    # a constant learning rate: a one-cycle schedule is planned for the run's length and cannot be extended
    base = [o for o in tiny_overrides if not o.startswith("trainer.max_epochs")] + [
        "model=unet",
        "model.scheduler=null",
    ]
    interrupted = tmp_path / "requeued"
    first = train(compose("config", base + ["trainer.max_epochs=1"], interrupted))
    assert first["resumed_from"] is None
    requeued = train(compose("config", base + ["trainer.max_epochs=2"], interrupted))
    assert requeued["resumed_from"] == str(interrupted / "checkpoints" / "last.ckpt")
    whole = train(compose("config", base + ["trainer.max_epochs=2"], tmp_path / "whole"))
    assert requeued["global_step"] == whole["global_step"] == 8
    for key in TEST_KEYS + ("objective",):
        assert requeued[key] == pytest.approx(whole[key], abs=1e-5)
    # the best-checkpoint record survived the resume: the same epoch is tested in both runs
    assert Path(requeued["checkpoint"]).name == Path(whole["checkpoint"]).name
    finished = train(compose("config", base + ["trainer.max_epochs=2"], interrupted))  # run once more
    assert finished["global_step"] == 8 and finished["test/mnist_psnr"] == pytest.approx(whole["test/mnist_psnr"])
