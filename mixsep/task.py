"""What the entry points share: building objects from the config with a user's mistake unwrapped, a command
line checked before Hydra would print a screen about it, and one training job's record (status.json, W&B,
the one-line error). The one-line error path itself is ``errors.one_line_errors``."""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mixsep import jobs, requeue
from mixsep.errors import ConfigError, DiskError, TrainingDivergedError, user_error
from mixsep.loggers import finish_wandb

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")  # absolute: main may run as mixsep.run or __main__
# ${if_tty:a,b}: a on a terminal, b when stdout goes to a file or a pipe (progress bar refresh rates)
OmegaConf.register_new_resolver("if_tty", lambda tty, plain: tty if sys.stdout.isatty() else plain, replace=True)
# ${mixsep_run_id:}: the unique part of a run folder's name; cached in the config, so a sweep's jobs (pickled
# to Ray or SLURM) resolve the sweep folder to the same name as the process that launched them
OmegaConf.register_new_resolver("mixsep_run_id", jobs.run_id, use_cache=True, replace=True)


def build(node, **kwargs):
    """``hydra.utils.instantiate``, but a user-fixable error raised by the constructor comes out as itself
    (Hydra wraps it in an InstantiationException)."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        fixable = user_error(err)
        if fixable is None:
            raise
        raise fixable from err


def build_module(model_cfg: DictConfig) -> L.LightningModule:
    # plain containers: the net's config is saved in the checkpoint and must load without omegaconf
    return build(OmegaConf.to_container(model_cfg, resolve=True), _recursive_=False)


def build_callbacks(cfg: DictConfig) -> list:
    callbacks = []
    for name, node in (cfg.get("callbacks") or {}).items():
        if not node:
            continue
        if "_target_" not in node:  # e.g. a preset's callbacks.ema options on top of callbacks=default
            raise ConfigError(
                f"callbacks.{name} has options but no _target_: the callbacks group in use does not define "
                f"it. Choose a group that does (e.g. callbacks={name}), or remove it with ~callbacks.{name}"
            )
        callbacks.append(build(node))
    return callbacks


def read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def check_command_line(args: list[str], config_name: str = "config") -> None:
    """What Hydra would refuse with a screen of text, refused in one line before it runs: an option no config
    group has (``model=bogus``, ``data/gray=bogus``), a run folder that is a file, a key the config does not
    have, an override Hydra cannot parse."""
    _check_overrides(args)
    if any(a.startswith("-") or "(" in a or "," in a or a.startswith("hparams_search=") for a in args):
        return  # sweeps (-m, or a sweeper's search space), --cfg, --help: Hydra's own
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            composed = compose(config_name=config_name, overrides=args, return_hydra_config=True)
            choices = [a for a in args if _is_group_choice(a)]
            reference = compose(config_name=config_name, overrides=choices, return_hydra_config=True)
    except HydraException as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        key = re.match(r"Could not override '([\w.]+)'", lines[0] if lines else "")
        if key and "." not in key[1] and key[1] in _trainer_keys():  # e.g. evaluate's accelerator= before 2026-11
            sys.exit(f"mixsep: {key[1]} is not a key of this command: it is a trainer setting, trainer.{key[1]}=...")
        sys.exit(f"mixsep: {'; '.join(lines[:3])}")
    given = {a.partition("=")[0].lstrip("+~") for a in args if "=" in a and not _is_group_choice(a)}
    problem = value_kind_problem(
        OmegaConf.to_container(composed, resolve=False), OmegaConf.to_container(reference, resolve=False), given
    )
    if problem:
        sys.exit(f"mixsep: {problem}")


def _is_group_choice(arg: str) -> bool:
    key = arg.partition("=")[0].lstrip("+~")
    return key.startswith("hydra") or (Path(CONF_DIR) / key).is_dir()


def _kind(value) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    return "a word" if isinstance(value, str) else type(value).__name__


# values of another kind that Lightning documents for these keys (trainer.devices=auto, fast_dev_run=N, ...)
ALSO_ACCEPTED = {
    "trainer.devices": (str,),
    "trainer.deterministic": (str,),
    "trainer.fast_dev_run": (int,),
    "trainer.benchmark": (bool,),
}


def value_kind_problem(given: dict, default: dict, keys: set[str], prefix: str = "") -> str | None:
    """The first value given on the command line whose kind is not the kind its default has: a word where a
    number, a list or true/false belongs, true/false where a number belongs, a number or a list where true/false
    belongs. Never silently taken as something else (a word ``yes`` for a switch, ``1e-3x`` for a rate)."""
    for key, ref in default.items():
        name = f"{prefix}{key}"
        if key == "hydra" or key not in given:
            continue
        value = given[key]
        if isinstance(ref, dict) and isinstance(value, dict):
            found = value_kind_problem(value, ref, keys, f"{name}.")
            if found:
                return found
            continue
        if name not in keys or value is None or ref is None or _interpolation(value) or _interpolation(ref):
            continue
        if isinstance(value, ALSO_ACCEPTED.get(name, ())):
            continue
        wrong = (
            (isinstance(ref, bool) and not isinstance(value, bool))
            or (isinstance(ref, (int, float)) and not isinstance(ref, bool) and isinstance(value, (str, bool)))
            or (isinstance(ref, list) and isinstance(value, (str, bool)))
        )
        if wrong:
            example = str(ref).lower() if isinstance(ref, bool) else ref
            typed = str(value).lower() if isinstance(value, bool) else repr(value)
            return f"{name}={typed} is {_kind(value)}, but {name} takes {_kind(ref)} (its default: {name}={example})"
    return None


def _interpolation(value) -> bool:
    return isinstance(value, str) and "${" in value


def _trainer_keys() -> set[str]:
    from omegaconf import OmegaConf

    return set(OmegaConf.load(Path(CONF_DIR) / "trainer" / "default.yaml"))


def _check_overrides(args: list[str]) -> None:
    conf = Path(CONF_DIR)
    for arg in args:
        key, _, value = arg.partition("=")
        key = key.lstrip("+~")
        if not value or key.startswith("hydra") and key != "hydra.run.dir":
            continue
        if key == "hydra.run.dir" and Path(value).exists() and not Path(value).is_dir():
            sys.exit(f"mixsep: hydra.run.dir={value} is a file, not a folder: choose a folder for the run")
        group = conf / key
        if "." in key or not group.is_dir() or "(" in value:
            continue
        for option in value.strip("[]").split(","):
            option = option.strip()
            if option and option != "null" and not (group / f"{option}.yaml").is_file():
                choices = sorted(
                    str(p.relative_to(group).with_suffix(""))
                    for p in group.rglob("*.yaml")
                    if not p.name.startswith("_")
                )
                sys.exit(f"mixsep: {key}={option} is not an option of conf/{key}/: choose one of {', '.join(choices)}")


@contextlib.contextmanager
def recorded_job(out: Path, optimized_metric: str) -> Iterator[dict]:
    """One training job's life in its folder's status.json: running, then completed (with
    ``record["objective"]``), failed, re-queued or cancelled; its W&B run finished alike.

    A user-fixable error of a single run exits with one line ``mixsep: …`` (no traceback); inside a sweep it
    raises, so that the launcher marks this job failed and the other jobs go on. A run refused before training
    leaves a finished run's record as it was."""
    from lightning.pytorch.utilities import rank_zero_only

    zero = rank_zero_only.rank == 0
    lock = jobs.FolderLock(out)
    if zero:  # before anything is written: a live job's folder is left exactly as it is
        try:
            lock.acquire()
        except ConfigError as err:  # in use by a live job, or not writable
            if jobs.hydra_job()["multirun"]:
                raise
            sys.exit(f"mixsep: {err}")
    earlier_status = read_bytes(out / "status.json")
    record: dict = {}
    try:
        if zero:  # the lock above has checked that the folder takes files
            jobs.write_status(out, "running", requeues=requeue.requeue_count())
        yield record
    except BaseException as err:
        stopped_early = dict(requeue.stopping) if isinstance(err, SystemExit) else {}
        if zero:
            with contextlib.suppress(OSError):  # an unwritable folder: the message below says so
                if stopped_early:  # re-queued or cancelled by the scheduler: not a failure
                    requeues = requeue.requeue_count() + (stopped_early["status"] == "requeued")
                    jobs.write_status(out, stopped_early["status"], reason=stopped_early["reason"], requeues=requeues)
                else:
                    jobs.write_status(out, "failed", **jobs.failure_fields(err))
        finish_wandb(failed=not stopped_early, preempted=stopped_early.get("status") == "requeued")
        lock.release()
        fixable = user_error(err)
        if fixable is not None and not jobs.hydra_job()["multirun"]:
            if zero and earlier_status is not None and not isinstance(fixable, (TrainingDivergedError, DiskError)):
                with contextlib.suppress(OSError):  # refused before training: the folder's record stays
                    (out / "status.json").write_bytes(earlier_status)
            sys.exit(f"mixsep: {fixable}")
        raise
    finish_wandb(failed=False)
    if zero:
        jobs.write_status(
            out,
            "completed",
            optimized_metric=optimized_metric,
            objective=record["objective"],
            requeues=requeue.requeue_count(),
        )
    lock.release()
