"""Checks of a composed config's values inside the task, before a run starts: each value against the kind its
declaration gives it, and the trainer against this machine (Hydra's own refusals: training/command_line.py)."""

from __future__ import annotations

import collections.abc
import dataclasses
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Union, get_args, get_origin

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from mixsep.conf import CONF_DIR
from mixsep.errors import ConfigError
from mixsep.training.hardware import on_gpu


@dataclass
class RunSettings:
    """A run's own top-level settings (config.yaml): their kinds, and the checks of their values beside them. The
    other nodes are checked against the signatures of what they build (the LightningModule, its network, the data
    module, Lightning's Trainer)."""

    seed: int
    samples: int
    optimized_metric: str
    test_ckpt: Literal["best", "last"]
    experiment_name: str
    ckpt_path: str | None = None
    debug_mode: str | None = None
    extensions: list[str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.samples, int) or self.samples < 0:
            raise ConfigError(f"samples={self.samples} must be a whole number >= 0 (the test pairs in samples.png)")
        if not str(self.optimized_metric).startswith("val/"):
            raise ConfigError(
                f"optimized_metric={self.optimized_metric} must be a validation metric (val/...): sweeps select on "
                "the validation pairs, never on the test pairs."
            )
        if self.test_ckpt not in ("best", "last"):
            raise ConfigError(f"test_ckpt={self.test_ckpt} is not one of best, last (the checkpoint tested)")


def _kind(value) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "a list"
    return "a word" if isinstance(value, str) else type(value).__name__


def _wanted(hint) -> list[str] | None:
    """What a value of type ``hint`` is, in the words of the one-line errors; None: any value (something built
    from its own config, a mapping, a class mixsep does not check)."""
    if get_origin(hint) in (Union, types.UnionType):
        words = [_wanted(arg) for arg in get_args(hint) if arg is not type(None)]
        return None if None in words else [word for some in words for word in some]
    if get_origin(hint) is Literal:
        return [_kind(choice) for choice in get_args(hint)]
    if hint is bool:
        return ["true/false"]
    if hint in (int, float):
        return ["a whole number" if hint is int else "a number"]
    if hint is str:
        return ["a word"]
    if hint in (list, tuple) or get_origin(hint) in (list, tuple, collections.abc.Sequence):
        return ["a list"]
    return None


def _fits(value, hint) -> bool:
    wanted = _wanted(hint)
    if value is None or wanted is None:
        return True
    kind = _kind(value)
    return kind in wanted or (kind == "a number" and "a whole number" in wanted and isinstance(value, int))


def _typed_parameters(target) -> dict:
    try:
        hints = typing.get_type_hints(target.__init__ if isinstance(target, type) else target)
    except Exception:  # hints that name what this Python cannot resolve: nothing to check against
        return {}
    return {k: v for k, v in hints.items() if k != "return"}


def kind_problem(values: dict, target, prefix: str = "") -> str | None:
    """The first value of ``values`` whose kind is not the kind ``target``'s signature gives it: a word where a
    number, a list or true/false belongs, true/false where a number belongs, a fraction where a whole number
    belongs. Never silently taken as something else (a word ``yes`` for a switch, ``1e-3x`` for a rate)."""
    hints = _typed_parameters(target)
    for key, value in values.items():
        if key in hints and not _fits(value, hints[key]):
            name = f"{prefix}{key}"
            typed = str(value).lower() if isinstance(value, bool) else repr(value)
            wanted = " or ".join(dict.fromkeys(_wanted(hints[key])))
            return f"{name}={typed} is {_kind(value)}, but {name} takes {wanted}"
    return None


def check_kinds(cfg: DictConfig) -> None:
    """Every value of a composed training config against its declared kind: the run's settings (RunSettings),
    the model, its network and the data module against their signatures (the trainer's: check_trainer)."""
    from hydra.utils import get_object

    from mixsep.models.registry import architecture, architecture_name

    def plain(node) -> dict:
        return {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k != "_target_"}

    value = lambda v: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
    settings = {f.name: value(cfg[f.name]) for f in dataclasses.fields(RunSettings) if f.name in cfg}
    nodes = [(settings, RunSettings, "")]  # the trainer: check_trainer, which evaluate shares
    if cfg.get("data") is not None and "_target_" in cfg.data:
        nodes.append((plain(cfg.data), get_object(cfg.data._target_), "data."))
    if cfg.get("model") is not None and "_target_" in cfg.model:
        model = plain(cfg.model)
        nodes.append((model, get_object(cfg.model._target_), "model."))
        net = model.get("net")
        if isinstance(net, dict) and "_target_" in net:
            nodes.append((net, architecture(architecture_name(net["_target_"])), "model.net."))
    for values, target, prefix in nodes:
        problem = kind_problem(values, target, prefix)
        if problem:
            raise ConfigError(problem)
    RunSettings(**settings)


def trainer_keys() -> set[str]:
    return set(OmegaConf.load(Path(CONF_DIR) / "trainer" / "default.yaml"))


def check_trainer(trainer_cfg: DictConfig) -> None:
    """What Lightning would refuse only mid-fit (with a bare assert) or not at all: values of the wrong kind, more
    devices than the machine has, a strategy that trains in multiprocessing children."""
    problem = kind_problem(OmegaConf.to_container(trainer_cfg, resolve=True), L.Trainer, "trainer.")
    if problem:
        raise ConfigError(problem)
    devices = trainer_cfg.get("devices")
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > 1:
        gpu = on_gpu(trainer_cfg)
        have = torch.cuda.device_count() if gpu else os.cpu_count() or 1
        if devices > have:
            raise ConfigError(
                f"trainer.devices={devices} is more than the {have} {'GPUs' if gpu else 'CPU cores'} of this "
                f"machine: use trainer.devices={have} or fewer (-1: all of them)"
            )
    # strategies that train in multiprocessing children (spawn / fork): the trained weights, the callbacks' state
    # and the data module would live there, not in this process, which writes metrics.json and the rest
    strategy = str(trainer_cfg.get("strategy") or "auto")
    if any(word in strategy for word in ("spawn", "fork", "notebook")):
        raise ConfigError(
            f"trainer.strategy={strategy} is not supported: it trains in child processes started by "
            "multiprocessing, so this process cannot write the run's outputs. Use trainer.strategy=ddp "
            "(or trainer=ddp), which starts one script process per device."
        )


def check_run(cfg: DictConfig) -> None:
    """Every check of a composed training config before anything is built (the data's sizes: the data module's
    ``check``, once it is built)."""
    check_kinds(cfg)
    check_trainer(cfg.trainer)
