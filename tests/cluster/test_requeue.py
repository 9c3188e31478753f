"""Save on a scheduler's signal, resume mid-epoch exactly where the run stood (mixsep.requeue), and resume
into another folder with the best-checkpoint record."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

import lightning as L
import pytest
import torch
import wandb
from lightning.pytorch.utilities.exceptions import SIGTERMException

from mixsep.cluster.job import Job
from mixsep.cluster.requeue import SaveOnSignal
from mixsep.data.datamodule import MixDataModule
from mixsep.models.module import SeparationModule
from mixsep.run import train
from mixsep.training.loggers import WandbLogger, finish_dashboards

NET = {"_target_": "mixsep.models.UNetSeparator", "widths": [4, 8]}


class RecordBatches(L.Callback):
    """The training batches a run saw (a digest of their uint8 pixels), and a SIGTERM at one of them."""

    def __init__(self, sigterm_at_step: int | None = None, when: str = "batch_start") -> None:
        self.seen, self.sigterm_at_step, self.when = [], sigterm_at_step, when

    def _sigterm(self, trainer, when: str) -> None:
        if trainer.global_step == self.sigterm_at_step and self.when == when:
            trainer._signal_connector.received_sigterm = True  # what Lightning's SIGTERM handler sets

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        mix = batch[0]
        self.seen.append(hashlib.sha256(mix.float().numpy().tobytes()).hexdigest()[:16])
        self._sigterm(trainer, "batch_start")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._sigterm(trainer, "batch_end")

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._sigterm(trainer, "validation")


def fit(
    tiny_data_kwargs, tmp_path, callbacks, ckpt_path=None, logger=False, **trainer_kwargs
) -> tuple[L.Trainer, SeparationModule]:
    L.seed_everything(0)
    data = MixDataModule(**{**tiny_data_kwargs, "train_pairs": 96})
    module = SeparationModule(net=NET, lr=1e-2, loss="psnr", scheduler="onecycle")
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=logger,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        default_root_dir=tmp_path,
        **trainer_kwargs,
    )
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return trainer, module


def test_a_sigterm_saves_mid_epoch_and_the_resumed_run_matches_an_uninterrupted_one(tiny_data_kwargs, tmp_path):
    whole = RecordBatches()
    _, reference = fit(tiny_data_kwargs, tmp_path / "a", [whole])
    assert len(whole.seen) == 24  # 2 epochs of 12 batches

    first = RecordBatches(sigterm_at_step=16)  # epoch 1, batch 4
    job = Job(tmp_path / "b")
    with pytest.raises(SIGTERMException):
        fit(tiny_data_kwargs, tmp_path / "b", [first, SaveOnSignal(job, dirpath=str(tmp_path / "b"))])
    assert job.stopping == {"status": "cancelled", "reason": "SIGTERM"}  # no scheduler will re-queue it
    saved = torch.load(tmp_path / "b" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 17
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 1, "batches": 5}]

    rest = RecordBatches()
    trainer, resumed = fit(tiny_data_kwargs, tmp_path / "b", [rest], ckpt_path=tmp_path / "b" / "last.ckpt")
    assert trainer.global_step == 24
    assert first.seen + rest.seen == whole.seen  # the same pairs, in the same order, none twice
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


class KillAtStep(L.Callback):
    """A real SIGTERM to this process at the start of one training step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_real_sigterm_ends_a_job_at_once_outside_training_and_at_the_next_batch_within(tiny_data_kwargs, tmp_path):
    """While a job loads its data or starts W&B no Trainer handles SIGTERM (under submitit it was ignored, and SLURM
    killed the job ``KillWait`` later with status.json still saying running): it ends the job at once, recorded.
    Within training, Lightning's handling stands: the state is saved at the batch boundary."""
    before = signal.getsignal(signal.SIGTERM)
    reached = []
    with pytest.raises(SIGTERMException), Job(tmp_path / "a"):
        os.kill(os.getpid(), signal.SIGTERM)
        reached.append("the line after the signal")
    assert reached == []
    status = json.loads((tmp_path / "a" / "status.json").read_text())
    assert (status["status"], status["reason"]) == ("cancelled", "SIGTERM")  # no scheduler will re-queue it
    assert signal.getsignal(signal.SIGTERM) is before

    with pytest.raises(SIGTERMException), Job(tmp_path / "b") as job:
        fit(tiny_data_kwargs, tmp_path / "b", [KillAtStep(16), SaveOnSignal(job, dirpath=str(tmp_path / "b"))])
    assert torch.load(tmp_path / "b" / "last.ckpt", weights_only=False)["global_step"] == 17
    status = json.loads((tmp_path / "b" / "status.json").read_text())
    assert (status["status"], status["reason"]) == ("cancelled", "SIGTERM")
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("when, step", [("batch_end", 16), ("validation", 12)])
def test_a_sigterm_that_lightning_acts_on_first_saves_too_and_the_resumed_run_matches(
    when, step, tiny_data_kwargs, tmp_path
):
    """A SIGTERM after SaveOnSignal's own batch-end check (during a later callback) or during validation:
    Lightning raises at its own check; the state is saved there, and the run resumes exactly."""
    whole = RecordBatches()
    _, reference = fit(tiny_data_kwargs, tmp_path / "a", [whole])
    first = RecordBatches(sigterm_at_step=step, when=when)  # after SaveOnSignal: its hooks run later
    job = Job(tmp_path / "b")
    with pytest.raises(SIGTERMException):
        fit(tiny_data_kwargs, tmp_path / "b", [SaveOnSignal(job, dirpath=str(tmp_path / "b")), first])
    assert job.stopping == {"status": "cancelled", "reason": "SIGTERM"}
    assert torch.load(tmp_path / "b" / "last.ckpt", weights_only=False)["global_step"] == step
    rest = RecordBatches()
    trainer, resumed = fit(tiny_data_kwargs, tmp_path / "b", [rest], ckpt_path=tmp_path / "b" / "last.ckpt")
    assert trainer.global_step == 24
    assert first.seen + rest.seen == whole.seen
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


class StopWandbService(L.Callback):
    """At the first validation batch after training's first epoch, what a scheduler's SIGTERM to every process
    of the job does: W&B's real service process ends, and Lightning's handler notes the signal in this process."""

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if trainer.sanity_checking or trainer._signal_connector.received_sigterm:
            return
        services = [p for p in Path("/proc").glob("[0-9]*") if _child_named(p, "wandb-core")]
        assert services, "no W&B service process found"
        for proc in services:
            os.kill(int(proc.name), signal.SIGTERM)
        deadline = time.monotonic() + 20
        while any(_child_named(p, "wandb-core", zombie_too=False) for p in services) and time.monotonic() < deadline:
            time.sleep(0.05)
        trainer._signal_connector.received_sigterm = True


def _child_named(proc: Path, name: str, zombie_too: bool = True) -> bool:
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        comm = (proc / "comm").read_text().strip()
    except OSError:
        return False
    return comm == name and int(fields[1]) == os.getpid() and (zombie_too or fields[0] != "Z")


def test_a_sigterm_that_also_ends_wandbs_service_still_saves_and_ends_the_job_as_stopped(
    tiny_data_kwargs, tmp_path, monkeypatch
):
    """SLURM signals every process of a job: W&B's service ends with the SIGTERM, before the job reaches its next
    batch boundary. The validation's log call in between must not make the job fail (CI saw a pre-empted SLURM
    job fail with ConnectionResetError): it saves, ends as stopped, and its W&B run is closed without an error."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = WandbLogger(project="mixsep-test", save_dir=str(tmp_path), id="sigterm01")
    job = Job(tmp_path / "b")
    with pytest.raises(SIGTERMException):
        fit(
            tiny_data_kwargs,
            tmp_path / "b",
            [SaveOnSignal(job, dirpath=str(tmp_path / "b")), StopWandbService()],
            logger=logger,
        )
    assert job.stopping == {"status": "cancelled", "reason": "SIGTERM"}
    assert torch.load(tmp_path / "b" / "last.ckpt", weights_only=False)["global_step"] == 12  # the end of epoch 0
    assert logger._service_gone
    finish_dashboards([logger], "cancelled")  # closes what is left of the run without raising
    assert list(tmp_path.glob("wandb/offline-run-*-sigterm01/run-sigterm01.wandb"))  # the files so far are kept
    assert wandb.run is None  # the next job of this process (a sweep's) starts its own run, on a new service
    following = WandbLogger(project="mixsep-test", save_dir=str(tmp_path / "next"), id="next0001")
    following.log_metrics({"x": 1.0}, step=0)
    finish_dashboards([following], "completed")
    assert not following._service_gone
    assert list((tmp_path / "next").glob("wandb/offline-run-*-next0001/run-next0001.wandb"))


@pytest.mark.slow
def test_the_readmes_resume_with_a_new_budget_continues_a_scheduled_unet(tiny_overrides, tmp_path, capfd):
    """python -m mixsep.run hydra.run.dir=<a finished unet run> trainer.max_epochs=3: the one-cycle
    schedule is laid over the new budget (it used to step past the old one and fail)."""
    import csv
    import json

    from tests.helpers import run_cli_here

    run = tmp_path / "unet"
    first = run_cli_here(tiny_overrides + ["model=unet", f"hydra.run.dir={run}"], capfd)
    assert first.returncode == 0, first.stderr[-3000:]
    steps_one_epoch = json.loads((run / "metrics.json").read_text())["global_step"]
    again = run_cli_here(tiny_overrides + ["model=unet", "trainer.max_epochs=3", f"hydra.run.dir={run}"], capfd)
    assert again.returncode == 0, again.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 3 * steps_one_epoch and metrics["resumed_from"].endswith("last.ckpt")
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    rates = [float(r["lr-Adam"]) for r in csv.DictReader(open(run / "csv" / "metrics.csv")) if r.get("lr-Adam")]
    assert rates[-1] < 3e-3 / 1000  # annealed at the new end (model.lr 3e-3, one-cycle ends at lr / 25e4)


def test_resume_into_a_new_folder_keeps_the_best_record(compose, tiny_overrides, tmp_path):
    base = [o for o in tiny_overrides if not o.startswith("trainer.max_epochs")] + ["model.lr=0.02"]
    first = train(compose("config", base + ["trainer.max_epochs=2"], tmp_path / "a"))
    resumed = train(
        compose(
            "config",
            base + ["trainer.max_epochs=3", f"ckpt_path={tmp_path / 'a' / 'checkpoints' / 'last.ckpt'}"],
            tmp_path / "b",
        )
    )
    ckpt = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=False)
    state = next(v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint{'monitor': 'val/loss'"))
    history = next(v["history"] for k, v in ckpt["callbacks"].items() if k.startswith("SamplesAndCurves"))
    val_losses = dict(history["val"])
    assert sorted(val_losses) == [1, 2, 3]  # the loss history came along
    best_epoch = min(val_losses, key=val_losses.get)
    assert float(state["best_model_score"]) == pytest.approx(val_losses[best_epoch], rel=1e-5)
    assert resumed["checkpoint"].endswith(f"best-epoch{best_epoch - 1:03d}.ckpt")  # the true best is tested
    assert Path(first["checkpoint"]).exists()  # nothing of the earlier run was deleted


@pytest.fixture
def submitit_job(tmp_path, monkeypatch):
    """This process as submitit's job 7 (its only task) runs it: submitit's own handler of the scheduler's warning
    installed, as submitit's job process does (its re-queue is the local executor's: it exits)."""
    from submitit.core.job_environment import JobEnvironment, SignalHandler
    from submitit.core.utils import DelayedSubmission, JobPaths
    from submitit.local.local import LocalJobEnvironment

    for name in LocalJobEnvironment._env.values():
        monkeypatch.setenv(name, "7" if name.endswith("JOB_ID") else "1" if "NUM" in name or "NTASKS" in name else "0")
    delayed = DelayedSubmission(print)
    delayed._timeout_min = 60  # one minute in: not at its time limit, so submitit calls it a pre-emption
    submitit = SignalHandler(LocalJobEnvironment(), JobPaths(tmp_path / "submitit"), delayed)
    signum = JobEnvironment._usr_sig()
    before = signal.signal(signum, submitit.checkpoint_and_try_requeue)
    yield signum
    signal.signal(signum, before)


def test_a_schedulers_warning_before_training_starts_is_a_requeue_not_a_failure(tmp_path, submitit_job):
    """submitit's own handler of the scheduler's warning (USR2) re-queues and exits; when it comes while the job
    still loads its data or starts W&B (before the callbacks exist), status.json says re-queued, not failed."""
    with pytest.raises(SystemExit), Job(tmp_path / "job"):
        os.kill(os.getpid(), submitit_job)  # while the data loads: no SaveOnSignal yet
    status = json.loads((tmp_path / "job" / "status.json").read_text())
    assert (status["status"], status["reason"], status["requeues"]) == ("requeued", "preemption", 1)
    assert signal.getsignal(submitit_job).__self__.__class__.__name__ == "SignalHandler"  # submitit's, restored


class SignalMidStep(L.Callback):
    """``signum`` to this process in the middle of one training step: after its backward, before its optimizer
    step (where a scheduler's signal lands most of a step's time)."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def test_submitits_requeue_exits_mid_step_saving_nothing_and_save_on_signal_saves_that_step_first(
    tiny_data_kwargs, tmp_path, submitit_job
):
    """Gap: submitit's handler re-queues and exits where the signal lands, mid-step, and hydra-submitit-launcher's
    ``checkpoint()`` resubmits the same job with its same arguments, saving nothing: every step since the last
    checkpoint is lost. The job holds the warning for SaveOnSignal, which ends that step, saves it, then lets
    submitit re-queue; the next allocation resumes exactly."""
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    launcher = SlurmLauncher()
    again = launcher.checkpoint(["seed=1"], "hydra.sweep.dir", 0, "0", {})
    assert again.function is launcher and again.args == (["seed=1"], "hydra.sweep.dir", 0, "0", {})

    stopped_at = RecordBatches()
    with pytest.raises(SystemExit):
        fit(tiny_data_kwargs, tmp_path / "a", [stopped_at, SignalMidStep(16, submitit_job)])
    assert len(stopped_at.seen) == 17 and not list((tmp_path / "a").rglob("*.ckpt"))  # step 17 half done, no file

    whole = RecordBatches()
    _, reference = fit(tiny_data_kwargs, tmp_path / "whole", [whole])
    first = RecordBatches()
    with pytest.raises(SystemExit), Job(tmp_path / "b") as job:
        callbacks = [first, SignalMidStep(16, submitit_job), SaveOnSignal(job, str(tmp_path))]
        fit(tiny_data_kwargs, tmp_path / "b", callbacks)
    status = json.loads((tmp_path / "b" / "status.json").read_text())
    assert (status["status"], status["reason"]) == ("requeued", "preemption")
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["global_step"] == 17  # the step it was in, done
    rest = RecordBatches()
    trainer, resumed = fit(tiny_data_kwargs, tmp_path / "c", [rest], ckpt_path=tmp_path / "last.ckpt")
    assert trainer.global_step == 24 and first.seen + rest.seen == whole.seen
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


@pytest.fixture
def slurm_task(tmp_path, monkeypatch):
    """This process as the one task of SLURM job 7, with an ``scontrol`` that only notes its arguments."""
    for name, value in {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLURM_NODEID", "0")
    monkeypatch.setenv("SLURM_JOB_NAME", "mixsep")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return tmp_path / "scontrol.log"


def test_lightnings_slurm_requeue_saves_inside_its_signal_handler_and_the_step_is_lost(
    tiny_data_kwargs, tmp_path, slurm_task
):
    """Gap: Lightning's ``SLURMEnvironment(auto_requeue=True, requeue_signal=...)`` saves in its signal handler,
    wherever the step is: resumed from that file, the run never trains the step it was in. (SaveOnSignal saves at
    the batch boundary: the test above.)"""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    whole = RecordBatches()
    _, reference = fit(tiny_data_kwargs, tmp_path / "whole", [whole])
    signum = signal.SIGUSR2
    before = signal.signal(signum, signal.SIG_DFL)  # no handler yet: Lightning installs its own
    try:
        first = RecordBatches()
        slurm = SLURMEnvironment(auto_requeue=True, requeue_signal=signum)
        fit(tiny_data_kwargs, tmp_path / "a", [first, SignalMidStep(16, signum)], plugins=[slurm])
    finally:
        signal.signal(signum, before)
    assert slurm_task.read_text().split() == ["requeue", "7"]  # it re-queued the job itself
    saved = tmp_path / "a" / "hpc_ckpt_1.ckpt"
    assert torch.load(saved, weights_only=False)["global_step"] == 16  # mid-step 17: its update not in the file
    rest = RecordBatches()
    trainer, resumed = fit(tiny_data_kwargs, tmp_path / "b", [rest], ckpt_path=saved)
    assert rest.seen == whole.seen[17:] and trainer.global_step == 23  # step 17's pairs: fetched, never trained
    changed = [n for (n, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()) if not a.equal(b)]
    assert changed


def test_lightnings_slurm_requeue_is_not_installed_where_submitits_handler_is(
    tiny_data_kwargs, tmp_path, slurm_task, submitit_job
):
    """Gap: Lightning installs its re-queue handler only where the signal has none; in a submitit job (every
    hydra/launcher=slurm job) submitit's handler is there first, so Lightning's never runs."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    class HandlerWhileFitting(L.Callback):
        def on_train_start(self, trainer, pl_module):
            self.handler = signal.getsignal(submitit_job)

    seen = HandlerWhileFitting()
    slurm = SLURMEnvironment(auto_requeue=True, requeue_signal=submitit_job)
    fit(tiny_data_kwargs, tmp_path, [seen], plugins=[slurm], max_steps=1, limit_val_batches=0)
    assert seen.handler.__self__.__class__.__name__ == "SignalHandler"  # submitit's
