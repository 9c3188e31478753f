"""An Optuna sweeper for Hydra on Optuna's current ask-and-tell API (hydra-optuna-sweeper 1.3 caps Optuna
below 3). Same config keys as that plugin: ``sampler``, ``direction``, ``storage``, ``study_name``,
``n_trials``, ``n_jobs``, ``max_failure_rate``, ``params`` (Hydra's sweep syntax: ``choice(...)``,
``range(...)``, ``interval(...)``, ``tag(log, interval(...))``, ``tag(int, interval(...))``). Each batch
of ``n_jobs`` trials goes through whichever launcher is configured (basic, Ray, SLURM); a study kept in a
database resumes where it stopped (``n_trials`` is the study's total)."""

from __future__ import annotations

import logging
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
    ) -> None:
        self.sampler_cfg, self.direction, self.storage = sampler, direction, storage
        self.study_name, self.n_trials, self.n_jobs = study_name, n_trials, n_jobs
        self.max_failure_rate, self.params = max_failure_rate, params or {}

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    def _search_space(self, arguments: list[str]) -> tuple[dict, list[str]]:
        """Swept parameters (config ``params`` and sweeps on the command line) and the fixed overrides."""
        parser = OverridesParser.create()
        lines = [
            f"{k}={v}"
            for k, v in (
                OmegaConf.to_container(self.params) if OmegaConf.is_config(self.params) else self.params
            ).items()
        ]
        space, fixed = {}, []
        for override in parser.parse_overrides(lines) + parser.parse_overrides(arguments):
            if override.is_sweep_override():
                space[override.get_key_element()] = distribution(override)
            else:
                fixed.append(override.input_line)
                space.pop(override.get_key_element(), None)
        return space, fixed

    def sweep(self, arguments: list[str]) -> None:
        import optuna
        from optuna.trial import TrialState

        space, fixed = self._search_space(arguments)
        directions = [self.direction] if isinstance(self.direction, str) else list(self.direction)
        sampler = self.sampler_cfg  # Hydra builds the plugin's nested _target_ (the sampler) already
        if sampler is not None and not isinstance(sampler, optuna.samplers.BaseSampler):
            sampler = instantiate(sampler)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=sampler,
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
            f"Optuna {optuna.__version__}: study {study.study_name}, {done} trials done, {max(remaining, 0)} to go"
        )
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")
        failures = launched = 0
        while remaining > 0:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, remaining))]
            overrides = [fixed + [f"{k}={v}" for k, v in t.params.items()] for t in trials]
            returns = self.launcher.launch(overrides, initial_job_idx=trials[0].number)
            for trial, ret in zip(trials, returns):
                try:
                    values = ret.return_value  # raises the job's exception if it failed
                    values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
                    study.tell(trial, values)
                except Exception as err:
                    failures += 1
                    log.warning(f"trial {trial.number} failed ({type(err).__name__}: {err}); marked FAIL")
                    study.tell(trial, state=TrialState.FAIL)
            launched += len(trials)
            remaining -= len(trials)
            if failures / launched > self.max_failure_rate:
                raise RuntimeError(
                    f"{failures} of {launched} Optuna trials failed (more than hydra.sweeper.max_failure_rate="
                    f"{self.max_failure_rate}); the study is kept in {self.storage or 'memory'}"
                )
        self._write_results(study, directions)

    def _write_results(self, study, directions: list[str]) -> None:
        if len(directions) == 1:
            best = study.best_trial
            results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
        else:
            results = {
                "name": "optuna",
                "solutions": [{"params": t.params, "values": t.values} for t in study.best_trials],
            }
        OmegaConf.save(OmegaConf.create(results), self.sweep_dir / "optimization_results.yaml")
        log.info(f"best: {results}")
