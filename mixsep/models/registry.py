"""The networks mixsep builds, by name: the only classes a config or a model file can make it construct.

A file (checkpoint, bundle) names its network by its registered name (``UNetSeparator``; earlier checkpoints
wrote ``mixsep.models.UNetSeparator``, which still resolves); either is looked up here, never imported, and its
arguments must be plain data (numbers, strings, booleans, None, lists of them): no nested ``_target_``, no
``_partial_``, no callables. So reading a model file never runs code that the file names.

A network of one's own is one class with ``@register_network`` in a module named by ``extensions`` (or
``MIXSEP_EXTENSIONS``), and a ``model/<name>.yaml`` naming it. Its contract, checked when a run builds it: a plain
``nn.Module`` whose ``forward`` takes a batch of mean images (B, 3, 32, 32) in [0, 1] and returns the two
estimates ``(gray, colour)``, each (B, 3, 32, 32), finite, meant to lie in [0, 1] (scores clamp them first);
``outputs = "sources"`` (the default).
"""

from __future__ import annotations

import importlib
import math
from typing import Any

from torch import nn

from mixsep.errors import ConfigError

# name -> the mixsep module that defines it (imported only when that network is built: the ResNet families
# import torchvision, which a U-Net bundle does not need), or the class a user's module registered
ARCHITECTURES: dict[str, str | type[nn.Module]] = {
    "UNetSeparator": "mixsep.models.unet",
    "ConvSkipDual": "mixsep.models.conv_dual",
    "ResNetSkipDual": "mixsep.models.resnet",
    "ResNetSkipSub": "mixsep.models.resnet",
    # the earlier reports' networks (experiment=prior/...)
    "ConvDual": "mixsep.prior.nets",
    "ResNetDual": "mixsep.prior.nets",
    "SingleSub": "mixsep.prior.nets",
    "MeanAE": "mixsep.prior.nets",
    "CifarAE": "mixsep.prior.nets",
}
# the import paths earlier checkpoints and configs name them by
PUBLIC_PACKAGES = ("mixsep.models", "mixsep.prior.nets")


def register_network(cls: type[nn.Module]) -> type[nn.Module]:
    """Declare a network class (a decorator): configs and model files may then name it by its class name. A name
    already taken by another class is refused, so a checkpoint's network never silently changes meaning."""
    name = cls.__name__
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(f"register_network takes an nn.Module class, not {cls!r}")
    known = ARCHITECTURES.get(name)
    if known is not None and known is not cls and known != cls.__module__:
        raise ConfigError(f"a network named {name} is already registered ({module_of(name)}): rename the class")
    ARCHITECTURES[name] = cls
    return cls


def module_of(name: str) -> str:
    """The Python module that defines a registered network (what a model file records, so that a receiver
    without it is told which module it needs)."""
    known = ARCHITECTURES[name]
    return known if isinstance(known, str) else known.__module__


def is_registered(target: str) -> bool:
    """Whether ``target`` (a registered name, or an earlier checkpoint's import path) names a network known here."""
    try:
        architecture_name(target)
    except ConfigError:
        return False
    return True


def architecture_name(target: Any, where: str = "model.net") -> str:
    """The registered name behind ``target`` (``UNetSeparator``, ``mixsep.models.UNetSeparator``, the defining
    module's path); a ConfigError naming the choices for anything else."""
    if isinstance(target, str):
        package, _, name = target.rpartition(".")
        if name in ARCHITECTURES and package in ("", *PUBLIC_PACKAGES, module_of(name)):
            return name
    raise ConfigError(
        f"{where} names {target!r}, which is not a registered network: {', '.join(ARCHITECTURES)} (a network of "
        "your own: @register_network in a module named by extensions=[...] or MIXSEP_EXTENSIONS)"
    )


def architecture(name: str) -> type[nn.Module]:
    known = ARCHITECTURES[name]
    return known if isinstance(known, type) else getattr(importlib.import_module(known), name)


MAX_SETTING_VALUES = 100_000  # a mixsep model's settings hold about a hundred values
MAX_SETTING_DEPTH = 32  # and nest a few levels


def check_plain(value: Any, where: str) -> None:
    """``value`` is plain data: None, a boolean, a finite or infinite number, a string, or a list of these;
    a mapping only where it holds no key starting with ``_`` (Hydra's ``_target_``, ``_partial_``, ...). Walked
    without recursion, every value counted each time it is reached: a pickle shares one list many times over, so
    a file of 2 kB can hold 4**40 of them, and the walk stops at ``MAX_SETTING_VALUES``."""
    pending, seen = [(value, where, 0)], 0
    while pending:
        value, at, depth = pending.pop()
        seen += 1
        if seen > MAX_SETTING_VALUES or depth > MAX_SETTING_DEPTH:
            what = f"{MAX_SETTING_DEPTH} levels" if depth > MAX_SETTING_DEPTH else f"{MAX_SETTING_VALUES:,} values"
            too = "nested too deeply" if depth > MAX_SETTING_DEPTH else "too large"
            raise ConfigError(f"{where}: {too} (over {what}) to be a mixsep model's settings")
        if isinstance(value, float) and math.isnan(value):
            raise ConfigError(f"{at} is NaN")
        if isinstance(value, (list, tuple)):
            pending += [(item, f"{at}[{i}]", depth + 1) for i, item in enumerate(value)]
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str) or key.startswith("_"):
                    raise ConfigError(f"{at} holds the key {key!r}: settings are plain data, nothing to build or call")
                pending.append((item, f"{at}.{key}", depth + 1))
        elif not (value is None or isinstance(value, (bool, int, float, str))):
            raise ConfigError(f"{at} is a {type(value).__name__}: settings are plain data (numbers, strings, lists)")


def network_spec(net: Any, where: str = "model.net") -> tuple[str, dict]:
    """(name, arguments) of a network config ``{_target_: ..., **arguments}``, both checked."""
    if not isinstance(net, dict):
        raise ConfigError(f"{where} must be a mapping with _target_ (one of mixsep's networks); got {net!r}")
    arguments = {k: v for k, v in net.items() if k != "_target_"}
    name = architecture_name(net.get("_target_"), where)
    for key in arguments:
        if not isinstance(key, str) or key.startswith("_") or key == "self":
            raise ConfigError(f"{where} holds {key!r}: a network takes plain arguments only (no _partial_, _args_)")
    check_plain(arguments, where)
    return name, arguments


def build_network(net: dict, where: str = "model.net") -> nn.Module:
    """The network a checked config names, built with its plain arguments (a wrong argument: a ConfigError)."""
    name, arguments = network_spec(net, where)
    try:
        return architecture(name)(**arguments)
    except TypeError as err:
        raise ConfigError(f"{where} ({name}): {err}") from err
