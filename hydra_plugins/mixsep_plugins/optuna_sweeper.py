"""An Optuna sweeper for Hydra on Optuna's current API (hydra-optuna-sweeper 1.3 caps Optuna below 3): that plugin's
keys, and a ``pruner`` (each trial's job reports to its trial: mixsep/cluster/search.py). ``Study.optimize`` keeps
``n_jobs`` slots busy (one slot for the basic launcher, which runs its jobs in this process)."""

# no ``from __future__ import annotations``: Hydra imports plugins outside sys.modules, where a dataclass
# cannot resolve string annotations
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class JobFailed(Exception):
    """A trial's job ended in an error: the trial is FAIL, the sweep goes on (within ``max_failure_rate``)."""


def without_job_traceback(record: logging.LogRecord) -> bool:
    if record.exc_info and isinstance(record.exc_info[1], JobFailed):
        record.exc_info = None
    return True


def distribution(override: Override):
    """The Optuna distribution of one swept override (``choice``, ``range``, ``interval``, ``tag(log, ...)``)."""
    import optuna.distributions as d

    value = override.value()
    if isinstance(value, ChoiceSweep):
        return d.CategoricalDistribution(list(override.sweep_iterator(transformer=lambda x: x)))
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


def suggest(trial, name: str, space) -> None:
    """``trial``'s value of ``name`` from the distribution ``space``, through Optuna's public suggest API."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(space, CategoricalDistribution):
        trial.suggest_categorical(name, space.choices)
    elif isinstance(space, IntDistribution):
        trial.suggest_int(name, space.low, space.high, step=space.step, log=space.log)
    else:
        trial.suggest_float(name, space.low, space.high, log=space.log)


@dataclasses.dataclass
class OptunaSweeper(Sweeper):
    sampler: Any = None  # an Optuna sampler or pruner: Hydra builds the config's ``_target_``
    direction: str | Sequence[str] = "minimize"
    storage: str | None = None
    study_name: str | None = None
    n_trials: int = 20
    n_jobs: int = 1
    max_failure_rate: float = 0.0
    params: dict | None = None
    pruner: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    def _search_space(self, arguments: list[str]) -> tuple[dict, list[str]]:
        """Swept parameters (config ``params`` and sweeps on the command line) and the fixed overrides."""
        parser = OverridesParser.create()
        lines = [f"{k}={v}" for k, v in dict(self.params or {}).items()]
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

        from mixsep.cluster.search import STUDY_FILE, open_storage  # (Hydra imports every plugin at its start)

        self.where = str(self.storage or self.sweep_dir / STUDY_FILE)
        space, fixed = self._search_space(arguments)
        directions = [self.direction] if isinstance(self.direction, str) else list(self.direction)
        study = optuna.create_study(
            study_name=self.study_name or self.sweep_dir.name,  # by default the folder's: a re-run resumes it
            storage=open_storage(self.storage, self.sweep_dir),
            sampler=self.sampler,
            pruner=self.pruner,
            directions=directions,
            load_if_exists=True,
        )
        self.first = len(study.get_trials(deepcopy=False))  # this sweep's trials: numbered from here
        for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.enqueue_trial(stale.params, skip_if_exists=False)  # asked by a sweep that stopped: ask again
            study.tell(stale.number, state=TrialState.FAIL)
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        remaining = self.n_trials - len(done)
        log.info(f"study {study.study_name} in {self.where}: {len(done)} trials done, {max(remaining, 0)} to go")
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")
        self.planned = remaining
        # a failed job's error is in its status.json and log: Optuna's warning names it without the traceback again
        logging.getLogger("optuna.study._optimize").addFilter(without_job_traceback)
        if remaining > 0:
            getattr(self.launcher, "start", lambda: None)()  # e.g. Ray: started once, before the slots share it
            in_this_process = type(self.launcher).__name__ == "BasicLauncher"
            study.optimize(
                lambda trial: self._run(trial, space, fixed),
                n_trials=remaining,
                n_jobs=1 if in_this_process else self.n_jobs,
                catch=(JobFailed,),
                callbacks=[self._check_failure_rate],
            )
        self._write_results(study, directions)

    def _run(self, trial, space: dict, fixed: list[str]) -> Any:
        """One trial's job, launched with the trial's parameters and number (``this_jobs_trial`` finds its trial by
        that number, never by the job's); its objective, or its exception (``TrialPruned``, ``JobFailed``)."""
        import optuna

        from mixsep.cluster.search import TRIAL_KEY

        for name, distribution_of_name in space.items():
            suggest(trial, name, distribution_of_name)
        overrides = fixed + [f"{k}={v}" for k, v in trial.params.items()] + [f"+{TRIAL_KEY}={trial.number}"]
        (ret,) = self.launcher.launch([overrides], initial_job_idx=trial.number)
        try:
            return ret.return_value  # raises the job's exception
        except optuna.TrialPruned:
            raise
        except Exception as err:
            raise JobFailed(f"{type(err).__name__}: {err}") from err

    def _check_failure_rate(self, study, trial) -> None:
        """``Study.optimize``'s callback: the sweep ends once more than ``max_failure_rate`` of the trials it runs
        have failed (of all it runs, so one early failure does not end a sweep that allows some)."""
        from optuna.trial import TrialState

        from mixsep.errors import MixsepError

        ours = [t for t in study.get_trials(deepcopy=False) if t.number >= self.first and t.state.is_finished()]
        failed = sum(t.state == TrialState.FAIL for t in ours)
        if failed > self.max_failure_rate * self.planned:
            raise MixsepError(
                f"{failed} of this sweep's {self.planned} Optuna trials failed (more than hydra.sweeper."
                f"max_failure_rate={self.max_failure_rate}); each failed job's status.json says why, and the study "
                f"is kept in {self.where}"
            )

    def _write_results(self, study, directions: list[str]) -> None:
        results = {"name": "optuna"}
        if len(directions) == 1:
            results.update(best_params=study.best_trial.params, best_value=study.best_trial.value)
        else:
            results["solutions"] = [{"params": t.params, "values": t.values} for t in study.best_trials]
        OmegaConf.save(OmegaConf.create(results), self.sweep_dir / "optimization_results.yaml")
        log.info(f"best: {results}")
