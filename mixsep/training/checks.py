"""Checks of a composed config's values before a run starts, and of the trainer against this machine (the
command line's own checks: training/command_line.py)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from mixsep.errors import ConfigError
from mixsep.training.config import CONF_DIR
from mixsep.training.hardware import on_gpu

# Lightning strategies that start their processes with multiprocessing (spawn / fork): the trained
# weights, the callbacks' state and the data module live in the children, not in the process that
# writes metrics.json, samples.png and the checkpoint record.
_MULTIPROCESSING_STRATEGIES = ("spawn", "fork", "notebook")


def check_strategy(trainer_cfg: DictConfig) -> None:
    strategy = str(trainer_cfg.get("strategy") or "auto")
    if any(word in strategy for word in _MULTIPROCESSING_STRATEGIES):
        raise ConfigError(
            f"trainer.strategy={strategy} is not supported: it trains in child processes started by "
            "multiprocessing, so this process cannot write the run's outputs. Use trainer.strategy=ddp "
            "(or trainer=ddp), which starts one script process per device."
        )


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


def trainer_keys() -> set[str]:
    return set(OmegaConf.load(Path(CONF_DIR) / "trainer" / "default.yaml"))


TARGET_EXAMPLES = {"pruner": "optuna.pruners.MedianPruner", "sampler": "optuna.samplers.TPESampler"}


def check_target(key: str, target: str) -> None:
    """A ``_target_`` given on the command line names something Python can import (Hydra would fail only
    when it builds the object: for a sweeper's pruner, with a screen of text before any job)."""
    if key.endswith("net._target_"):  # a network is one of mixsep's, by name (models/registry.py)
        from mixsep.models.registry import architecture_name

        architecture_name(target, key.removesuffix("._target_"))
        return
    if not _importable(target):
        part = key.rsplit(".", 2)[-2]
        example = TARGET_EXAMPLES.get(part, "package.module.ClassName")
        raise ConfigError(
            f"{key}={target} is no class or function Python can import: give its full dotted path, e.g. {example}"
        ) from None


INTEGER_TRAINER_ARGS = (
    "max_epochs",
    "min_epochs",
    "max_steps",
    "num_nodes",
    "log_every_n_steps",
    "check_val_every_n_epoch",
    "num_sanity_val_steps",
    "accumulate_grad_batches",
)


def _importable(dotted: str) -> bool:
    """``package.module.Name`` (or a module) names something Python can import."""
    import importlib

    module, _, name = dotted.rpartition(".")
    try:
        return hasattr(importlib.import_module(module), name) if module else False
    except (ImportError, ValueError):
        try:
            return importlib.import_module(dotted) is not None
        except (ImportError, ValueError):
            return False


def check_trainer(trainer_cfg: DictConfig) -> None:
    """What Lightning would refuse only mid-fit (with a bare assert) or not at all: integer counts, more devices
    than the machine has, a strategy that trains in multiprocessing children."""
    for key in INTEGER_TRAINER_ARGS:
        value = trainer_cfg.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"trainer.{key}={value!r} must be an integer (e.g. trainer.{key}=10)")
    devices = trainer_cfg.get("devices")
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > 1:
        gpu = on_gpu(trainer_cfg)
        have = torch.cuda.device_count() if gpu else os.cpu_count() or 1
        if devices > have:
            raise ConfigError(
                f"trainer.devices={devices} is more than the {have} {'GPUs' if gpu else 'CPU cores'} of this "
                f"machine: use trainer.devices={have} or fewer (-1: all of them)"
            )
    check_strategy(trainer_cfg)


def check_run(cfg: DictConfig) -> None:
    """Every check of a composed training config before anything is built (the data's sizes: the data module's
    ``check``, once it is built)."""
    check_trainer(cfg.trainer)
    check_optimized_metric(cfg.optimized_metric)
    check_samples(cfg.samples)


def check_samples(samples) -> None:
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
        raise ConfigError(f"samples={samples!r} must be a whole number >= 0 (the test pairs drawn in samples.png)")


def check_optimized_metric(name: str) -> None:
    if not name.startswith("val/"):
        raise ConfigError(
            f"optimized_metric={name} must be a validation metric (val/...): sweeps select on "
            "the validation pairs, never on the test pairs."
        )
