"""An Optuna sweeper for Hydra on Optuna's current ask-and-tell API (hydra-optuna-sweeper 1.3 caps Optuna
below 3). Same config keys as that plugin: ``sampler``, ``direction``, ``storage``, ``study_name``,
``n_trials``, ``n_jobs``, ``max_failure_rate``, ``params`` (Hydra's sweep syntax: ``choice(...)``,
``range(...)``, ``interval(...)``, ``tag(log, interval(...))``, ``tag(int, interval(...))``), and ``pruner``
(any Optuna pruner, by ``_target_``; each trial's job reports its validation objective to its trial and stops
when pruned: mixsep/cluster/search.py).

The study lives, by default, in Optuna's journal file in the sweep folder (``storage: null``), which every job
and every re-run of the sweep in that folder reaches; ``storage`` takes sqlite or a database URL instead.
``n_trials`` is the study's total: a re-run resumes it. With a launcher that runs its jobs elsewhere (Ray,
SLURM), ``n_jobs`` slots stay busy: each slot launches one trial and asks the next as soon as it ends or is
pruned. The basic launcher runs jobs in this process, one at a time, in batches of ``n_jobs``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def distribution(override: Override):
    """The Optuna distribution of one swept override (``choice``, ``range``, ``interval``, ``tag(log, ...)``)."""
    import optuna.distributions as d

    value = override.value()
    if isinstance(value, ChoiceSweep):
        return d.CategoricalDistribution([x for x in override.sweep_iterator(transformer=lambda x: x)])
    if isinstance(value, RangeSweep):
        if all(isinstance(x, int) for x in (value.start, value.stop, value.step)):
            return d.IntDistribution(int(value.start), int(value.stop) - 1, step=int(value.step))
        return d.CategoricalDistribution(list(override.sweep_iterator(transformer=lambda x: x)))
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if "int" in value.tags:  # Hydra reads interval bounds as floats: tag(int, interval(1, 5)) for integers
            return d.IntDistribution(int(value.start), int(value.end), log=log_scale)
        return d.FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise ValueError(f"{override.input_line}: not a sweep Optuna can search (choice, range or interval)")


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        sampler: Any = None,
        direction: str | Sequence[str] = "minimize",
        storage: str | None = None,
        study_name: str | None = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        max_failure_rate: float = 0.0,
        params: dict | None = None,
        pruner: Any = None,
    ) -> None:
        self.sampler_cfg, self.direction, self.storage = sampler, direction, storage
        self.study_name, self.n_trials, self.n_jobs = study_name, n_trials, n_jobs
        self.max_failure_rate, self.params, self.pruner_cfg = max_failure_rate, params or {}, pruner

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    def _search_space(self, arguments: list[str]) -> tuple[dict, list[str]]:
        """Swept parameters (config ``params`` and sweeps on the command line) and the fixed overrides."""
        parser = OverridesParser.create()
        lines = [f"{k}={v}" for k, v in dict(self.params).items()]
        space, fixed = {}, []
        for override in parser.parse_overrides(lines) + parser.parse_overrides(arguments):
            if override.is_sweep_override():
                space[override.get_key_element()] = distribution(override)
            else:
                fixed.append(override.input_line)
                space.pop(override.get_key_element(), None)
        return space, fixed

    def _built(self, cfg, base):
        """A sampler or pruner: Hydra builds the plugin's nested ``_target_`` already; a config is built here."""
        return cfg if cfg is None or isinstance(cfg, base) else instantiate(cfg)

    def sweep(self, arguments: list[str]) -> None:
        import optuna
        from optuna.trial import TrialState

        from mixsep.cluster.search import open_storage

        space, fixed = self._search_space(arguments)
        directions = [self.direction] if isinstance(self.direction, str) else list(self.direction)
        study = optuna.create_study(
            study_name=self.study_name or self.sweep_dir.name,  # by default the folder's: a re-run resumes it
            storage=open_storage(self.storage, self.sweep_dir),
            sampler=self._built(self.sampler_cfg, optuna.samplers.BaseSampler),
            pruner=self._built(self.pruner_cfg, optuna.pruners.BasePruner),
            directions=directions,
            load_if_exists=True,
        )
        for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
            if stale.state == TrialState.RUNNING:  # asked by a sweep that stopped: ask these params again
                study.enqueue_trial(stale.params, skip_if_exists=False)
                study.tell(stale.number, state=TrialState.FAIL)
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        remaining = self.n_trials - done
        log.info(
            f"Optuna {optuna.__version__}: study {study.study_name} in {self._where()}, {done} trials done, "
            f"{max(remaining, 0)} to go"
        )
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")
        self._outcomes = {"launched": 0, "failed": 0}
        self._lock = threading.Lock()
        if remaining > 0:
            if type(self.launcher).__name__ == "BasicLauncher" or self.n_jobs <= 1:
                self._in_batches(study, space, fixed, remaining)
            else:
                self._every_slot_busy(study, space, fixed, remaining)
        self._write_results(study, directions)

    def _where(self) -> str:
        from mixsep.cluster.search import STUDY_FILE

        return str(self.storage or self.sweep_dir / STUDY_FILE)

    def _overrides(self, fixed: list[str], trial) -> list[str]:
        """The job's overrides: the trial's parameters, and the trial's number for the job to report to
        (``this_jobs_trial``): a job is mapped to its trial explicitly, never by its job number."""
        from mixsep.cluster.search import TRIAL_KEY

        return fixed + [f"{k}={v}" for k, v in trial.params.items()] + [f"+{TRIAL_KEY}={trial.number}"]

    def _in_batches(self, study, space: dict, fixed: list[str], remaining: int) -> None:
        """Batches of ``n_jobs`` trials through the launcher, each batch after the last one ended (the basic
        launcher runs its jobs in this process, one after another)."""
        while remaining > 0:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, remaining))]
            returns = self.launcher.launch([self._overrides(fixed, t) for t in trials], trials[0].number)
            for trial, ret in zip(trials, returns):
                self._tell(study, trial, ret)
            remaining -= len(trials)

    def _every_slot_busy(self, study, space: dict, fixed: list[str], remaining: int) -> None:
        """``n_jobs`` slots, each launching one trial at a time and asking the next one the moment its trial ends
        (or is pruned): no slot waits for the slowest trial of a batch."""
        getattr(self.launcher, "start", lambda: None)()  # e.g. Ray: started once, before the slots share it
        budget = {"left": remaining}
        errors: list[BaseException] = []

        def slot() -> None:
            while not errors:
                with self._lock:
                    if budget["left"] <= 0:
                        return
                    budget["left"] -= 1
                    trial = study.ask(space)
                try:
                    (ret,) = self.launcher.launch([self._overrides(fixed, trial)], initial_job_idx=trial.number)
                    with self._lock:
                        self._tell(study, trial, ret)
                except BaseException as err:  # the launcher itself failed, or too many trials did
                    errors.append(err)
                    return

        threads = [threading.Thread(target=slot, daemon=True) for _ in range(min(self.n_jobs, remaining))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def _tell(self, study, trial, ret) -> None:
        """The study learns the trial's outcome: its validation objective, PRUNED, or FAIL."""
        import optuna
        from optuna.trial import TrialState

        self._outcomes["launched"] += 1
        try:
            values = ret.return_value  # raises the job's exception if it failed
            values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
            study.tell(trial, values)
        except optuna.TrialPruned:
            log.info(f"trial {trial.number} pruned")
            study.tell(trial, state=TrialState.PRUNED)
        except Exception as err:
            self._outcomes["failed"] += 1
            log.warning(f"trial {trial.number} failed ({type(err).__name__}: {err}); marked FAIL")
            study.tell(trial, state=TrialState.FAIL)
        failed, launched = self._outcomes["failed"], self._outcomes["launched"]
        if failed / launched > self.max_failure_rate:
            raise RuntimeError(
                f"{failed} of {launched} Optuna trials failed (more than hydra.sweeper.max_failure_rate="
                f"{self.max_failure_rate}); the study is kept in {self._where()}"
            )

    def _write_results(self, study, directions: list[str]) -> None:
        results = {"name": "optuna"}
        if len(directions) == 1:
            results.update(best_params=study.best_trial.params, best_value=study.best_trial.value)
        else:
            results["solutions"] = [{"params": t.params, "values": t.values} for t in study.best_trials]
        OmegaConf.save(OmegaConf.create(results), self.sweep_dir / "optimization_results.yaml")
        log.info(f"best: {results}")
