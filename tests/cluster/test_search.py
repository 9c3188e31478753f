"""Optuna searches through mixsep's sweeper: a pruner stops hopeless trials (their jobs stop, say so in status.json
and the reports, and the study records them PRUNED), the study lives in a journal file in the sweep folder that a
re-run resumes, and the slots of a launcher that runs jobs elsewhere never wait for the slowest trial of a batch."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.helpers import report_main, run_cli_here

pytestmark = pytest.mark.slow


def search(overrides: list[str], sweep, n_trials: int, capfd):
    return run_cli_here(
        [
            *overrides,
            "hparams_search=optuna",
            "hydra/sweeper/sampler=random",
            "hydra.sweeper.sampler.seed=6",  # draws good, good, bad (again on the re-run),
            f"hydra.sweeper.n_trials={n_trials}",
            "model.lr=choice(0.003,1e-12)",  # 1e-12: a rate far too low to learn anything
            "model.net.width=8",  # fixed: out of the preset's search space
            "data.batch_size=8",
            "hydra.sweeper.pruner.n_startup_trials=1",
            "hydra.sweeper.pruner.n_warmup_steps=0",
            "trainer.max_epochs=2",
            f"hydra.sweep.dir={sweep}",
            "-m",
        ],
        capfd,
    )


def test_a_pruned_search_stops_hopeless_trials_and_a_rerun_resumes_its_journal(tiny_overrides, tmp_path, capfd):
    import optuna
    from optuna.trial import TrialState

    sweep = tmp_path / "search"
    first = search(tiny_overrides, sweep, 3, capfd)
    assert first.returncode == 0, first.stderr[-3000:]
    journal = sweep / "optuna.journal"
    assert journal.is_file()  # the default storage: Optuna's journal file in the sweep folder

    again = search(tiny_overrides, sweep, 6, capfd)  # the same folder: the study resumes, 3 more trials to a total of 6
    assert again.returncode == 0, again.stderr[-3000:]
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.load_study(study_name="optuna_unet", storage=storage)
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(6))  # every trial, numbered on after the first run's
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert pruned and complete and len(pruned) + len(complete) == 6
    for trial in pruned:
        assert trial.params["model.lr"] == 1e-12
        record = json.loads((sweep / str(trial.number) / "status.json").read_text())
        assert record["status"] == "pruned" and record["epoch"] < 1  # stopped before its last epoch
        assert record["value"] == pytest.approx(trial.intermediate_values[record["epoch"]])
        assert not (sweep / str(trial.number) / "metrics.json").exists()  # never tested, never "best"
        assert (sweep / str(trial.number) / "checkpoints" / "last.ckpt").is_file()  # its checkpoint is kept
    for trial in complete:
        metrics = json.loads((sweep / str(trial.number) / "metrics.json").read_text())
        assert trial.value == pytest.approx(metrics["objective"]) and len(trial.intermediate_values) == 2
    assert study.best_trial.state == TrialState.COMPLETE and study.best_trial.params["model.lr"] == 0.003

    report = report_main(sweep, tmp_path, tiny_overrides[0].split("=", 1)[1])
    for trial in pruned:
        assert f"pruned at epoch {trial.last_step}" in report


class _Slow:
    """A launcher that runs its jobs elsewhere (a stand-in for Ray or SLURM): job 0 lasts until four other jobs have
    ended (at most 60 s), every other job 0.1 s; records when each job started and ended."""

    def __init__(self) -> None:
        self.spans: dict[int, tuple[float, float]] = {}
        self.others_done = threading.Semaphore(0)

    def launch(self, job_overrides, initial_job_idx):
        from hydra.core.utils import JobReturn, JobStatus

        returns = []
        for i, overrides in enumerate(job_overrides):
            number, start = initial_job_idx + i, time.monotonic()
            if number == 0:  # a slot that waited for this job would never let the others run: 60 s, then fail
                for _ in range(4):
                    self.others_done.acquire(timeout=60)
            else:
                time.sleep(0.1)
            self.spans[number] = (start, time.monotonic())
            if number:
                self.others_done.release()
            ret = JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=float(number))
            returns.append(ret)
        return returns


def test_every_slot_gets_the_next_trial_as_soon_as_its_own_ends(tmp_path):
    from hydra_plugins.mixsep_plugins.optuna_sweeper import OptunaSweeper

    sweeper = OptunaSweeper(direction="maximize", n_trials=6, n_jobs=2, params={"x": "choice(1,2)"})
    sweeper.launcher, sweeper.sweep_dir, sweeper.config = _Slow(), tmp_path, {}
    sweeper.sweep([])
    spans = sweeper.launcher.spans
    assert sorted(spans) == list(range(6))
    slow_end = spans[0][1]
    # while trial 0 runs, the other slot goes through trials 1..4 one after another, never waiting for trial 0
    assert sum(start < slow_end for start, _ in spans.values()) >= 4
    assert (tmp_path / "optuna.journal").is_file() and (tmp_path / "optimization_results.yaml").is_file()
