"""A job that is a trial of an Optuna search (mixsep's sweeper, hydra_plugins/mixsep_plugins/optuna_sweeper.py):
its study, found as the sweeper finds it (a job on another machine of a shared file system reaches it too), its
trial, and the callback that reports the validation objective to the trial and stops the run when pruned."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

log = logging.getLogger("mixsep")

STUDY_FILE = "optuna.journal"  # the default study: Optuna's journal file in the sweep folder
TRIAL_KEY = "hydra.job.env_set.MIXSEP_OPTUNA_TRIAL"  # the trial a job runs: set by the sweeper in its overrides


def open_storage(storage: str | None, sweep_dir: Path):
    """``storage`` as given (a database URL), else Optuna's journal file in the sweep folder (shared file systems)."""
    if storage:
        return storage
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    sweep_dir.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(sweep_dir / STUDY_FILE)))


def this_jobs_trial():
    """The Optuna trial this job runs, when the sweeper launched it in a search with a pruner; else None."""
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    number = hc.job.env_set.get(TRIAL_KEY.rpartition(".")[2])  # absent: another sweeper's job, or a run by hand
    if number is None or hc.sweeper.get("pruner") is None:
        return None
    import optuna

    sweep_dir = Path(str(hc.sweep.dir))
    name = hc.sweeper.get("study_name") or sweep_dir.name  # as the sweeper names it
    storage = optuna.storages.get_storage(open_storage(hc.sweeper.get("storage"), sweep_dir))
    # the job decides with the study's pruner, from the sweeper's config
    study = optuna.load_study(study_name=name, storage=storage, pruner=instantiate(hc.sweeper.pruner))
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(name), int(number))
    return optuna.trial.Trial(study, trial_id)


class ReportToTrial(L.Callback):
    """In a trial of a search with a pruner (elsewhere it does nothing): after every validation of fit, ``monitor``
    goes to the trial as its value at that epoch; when the pruner prunes the trial, training stops at the end of
    the epoch and fit ends in ``optuna.TrialPruned`` with the step, epoch and value (the job records it pruned)."""

    def __init__(self, monitor: str) -> None:
        self.monitor, self.trial = monitor, None
        self.pruned: dict | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.trial = this_jobs_trial()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.trial is None or trainer.sanity_checking or trainer.state.fn != "fit":
            return  # only the validations inside fit (not the sanity check, nor the best checkpoint's re-validation)
        value, epoch = float(trainer.callback_metrics.get(self.monitor, math.nan)), trainer.current_epoch
        if not math.isfinite(value):
            return
        self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            self.pruned = {"step": trainer.global_step, "epoch": epoch, "value": value, "monitor": self.monitor}
            log.info(f"trial {self.trial.number} pruned at epoch {epoch} ({self.monitor} {value:.4f})")
            trainer.should_stop = True

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and self.pruned:  # after every callback's on_fit_end (loss.png): no test, never "best"
            import optuna

            raise optuna.TrialPruned(self.pruned)
