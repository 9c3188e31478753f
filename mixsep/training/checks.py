"""Checks before a run starts, in one place: the command line (before Hydra would print a screen about it), the
composed config's values, the trainer against this machine."""

from __future__ import annotations

import os
import re
import sys
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


def check_command_line(args: list[str], config_name: str = "config") -> None:
    """What Hydra would refuse with a screen of text, refused in one line before it runs: an option no config
    group has (``model=bogus``, ``data/gray=bogus``), a run folder that is a file, a key the config does not
    have, an override Hydra cannot parse."""
    _check_overrides(args)
    if any(a.startswith("-") or "(" in a or "," in a or a.startswith("hparams_search=") for a in args):
        return  # sweeps (-m, or a sweeper's search space), --cfg, --help: Hydra's own
    from hydra import compose, initialize_config_dir
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            choices = [a for a in args if _is_group_choice(a)]
            reference = compose(config_name=config_name, overrides=choices, return_hydra_config=True)
        # the other overrides applied as Hydra's compose applies them after its groups (one compose, not two:
        # each is half a second of every run's start)
        composed = reference.copy()
        values = OverridesParser.create().parse_overrides([a for a in args if not _is_group_choice(a)])
        ConfigLoaderImpl._apply_overrides_to_config(values, composed)
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
    return set(OmegaConf.load(Path(CONF_DIR) / "trainer" / "default.yaml"))


def _check_overrides(args: list[str]) -> None:
    """Group options that do not exist (also inside a sweep's ``model=a,b``) and a run folder that is a file,
    read with Hydra's own override parser."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    conf = Path(CONF_DIR)
    parser = OverridesParser.create()
    for arg in args:
        if arg.startswith("-"):
            continue
        try:
            (override,) = parser.parse_overrides([arg])
        except OverrideParseException as err:
            sys.exit(f"mixsep: {arg} is not an override Hydra can read: {str(err).strip().splitlines()[0]}")
        key = override.key_or_group
        if key == "hydra.run.dir" and not override.is_sweep_override():
            value = str(override.value())
            if Path(value).exists() and not Path(value).is_dir():
                sys.exit(f"mixsep: hydra.run.dir={value} is a file, not a folder: choose a folder for the run")
        if key.endswith("._target_") and not override.is_sweep_override():
            _check_target(key, str(override.value()))
        group = conf / key
        if key.startswith("hydra") or "." in key or not group.is_dir():
            continue
        if override.is_sweep_override() and not override.is_choice_sweep():
            continue  # ranges and intervals of a sweeper's search space: Hydra's own
        options = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        for option in options:
            if isinstance(option, list):  # a list of options: model=[a,b] (+group=[...] appends config files)
                bad = [o for o in option if not (group / f"{o}.yaml").is_file()]
                option = bad[0] if bad else None
            if option is not None and str(option) != "null" and not (group / f"{option}.yaml").is_file():
                choices = sorted(
                    str(p.relative_to(group).with_suffix(""))
                    for p in group.rglob("*.yaml")
                    if not p.name.startswith("_")
                )
                sys.exit(f"mixsep: {key}={option} is not an option of conf/{key}/: choose one of {', '.join(choices)}")


TARGET_EXAMPLES = {"pruner": "optuna.pruners.MedianPruner", "sampler": "optuna.samplers.TPESampler"}


def _check_target(key: str, target: str) -> None:
    """A ``_target_`` given on the command line names something Python can import (Hydra would fail only
    when it builds the object: for a sweeper's pruner, with a screen of text before any job)."""
    from hydra._internal.utils import _locate  # hydra.utils.get_object logs its own lines before raising

    if key.endswith("net._target_"):  # a network is one of mixsep's, by name (models/registry.py)
        from mixsep.models.registry import architecture_name

        try:
            architecture_name(target, key.removesuffix("._target_"))
        except ConfigError as err:
            sys.exit(f"mixsep: {err}")
        return
    try:
        _locate(target)
    except (ImportError, ValueError):
        part = key.rsplit(".", 2)[-2]
        example = TARGET_EXAMPLES.get(part, "package.module.ClassName")
        sys.exit(
            f"mixsep: {key}={target} is no class or function Python can import: give its full dotted path, "
            f"e.g. {example}"
        )


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
