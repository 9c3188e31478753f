"""The networks mixsep builds, by registered name (``@register_network``, mixsep's own as a user's): the only
classes a config or a model file can make it construct, looked up here and never imported, with plain arguments
(files written before named them under ``_target_``, still read). The network contract: docs/extending.md."""

from __future__ import annotations

import importlib
import inspect
import math
from typing import Any

from torch import nn

from mixsep.errors import ConfigError

# where each of mixsep's own networks is declared: its module is imported when the name is first looked up, so a
# run or a model file loads only the family it builds (the ResNet families import torchvision)
BUILT_IN = {
    "UNetSeparator": "mixsep.models.unet",
    "ConvSkipDual": "mixsep.models.conv_dual",
    **dict.fromkeys(("ResNetSkipDual", "ResNetSkipSub"), "mixsep.models.resnet"),
    # the earlier reports' networks (experiment=prior/...)
    **dict.fromkeys(("ConvDual", "ResNetDual", "SingleSub", "MeanAE", "CifarAE"), "mixsep.prior.nets"),
}
NETWORKS: dict[str, type[nn.Module]] = {}  # registered name -> class, as @register_network declared it
NAME_KEY = "name"  # the key of model.net (and of a file's network) that names the registered network
OLD_NAME_KEY = "_target_"  # where files written before named it


def register_network(cls: type[nn.Module]) -> type[nn.Module]:
    """Declare a network class (a decorator) under its class name; a name another class holds is refused."""
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(f"register_network takes an nn.Module class, not {cls!r}")
    name, known = cls.__name__, NETWORKS.get(cls.__name__)
    taken = known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__)
    if taken or BUILT_IN.get(name, cls.__module__) != cls.__module__:
        raise ConfigError(f"a network named {name} is already registered ({module_of(name)}): rename the class")
    if NAME_KEY in inspect.signature(cls).parameters:
        raise ConfigError(f"network {name} takes an argument {NAME_KEY!r}, the key that names it: rename the argument")
    NETWORKS[name] = cls
    return cls


def registered_names() -> list[str]:
    return list({**BUILT_IN, **NETWORKS})


def module_of(name: str) -> str:
    """The Python module that defines a registered network (what model files record)."""
    return NETWORKS[name].__module__ if name in NETWORKS else BUILT_IN[name]


def is_registered(name: Any) -> bool:
    return isinstance(name, str) and name in registered_names()


def architecture(name: str) -> type[nn.Module]:
    """The class registered as ``name`` (a built-in's module imported now, which registers it)."""
    if name not in NETWORKS:
        importlib.import_module(BUILT_IN[name])
    return NETWORKS[name]


MAX_SETTING_VALUES = 100_000  # a mixsep model's settings hold about a hundred values
MAX_SETTING_DEPTH = 32  # and nest a few levels


def check_plain(value: Any, where: str) -> None:
    """``value`` is plain data: None, booleans, numbers but NaN, strings, lists, and mappings without keys starting
    with ``_`` (no ``_target_``). Walked without recursion, each value counted as often as it is reached (a 2 kB
    pickle can share one list 4**40 times over)."""
    pending, seen = [(value, where, 0)], 0
    while pending:
        value, at, depth = pending.pop()
        seen += 1
        if depth > MAX_SETTING_DEPTH:
            raise ConfigError(f"{where}: nested too deeply (over {MAX_SETTING_DEPTH} levels) for a model's settings")
        if seen > MAX_SETTING_VALUES:
            raise ConfigError(f"{where}: too large (over {MAX_SETTING_VALUES:,} values) for a model's settings")
        if isinstance(value, float) and math.isnan(value):
            raise ConfigError(f"{at} is NaN")
        if isinstance(value, (list, tuple)):
            pending += [(item, f"{at}[{i}]", depth + 1) for i, item in enumerate(value)]
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str) or key.startswith("_"):
                    raise ConfigError(f"{at} holds {key!r}: settings are plain data, nothing to build or call")
                pending.append((item, f"{at}.{key}", depth + 1))
        elif not (value is None or isinstance(value, (bool, int, float, str))):
            raise ConfigError(f"{at} is a {type(value).__name__}: settings are plain data (numbers, strings, lists)")


def network_spec(net: Any, where: str = "model.net") -> tuple[str, dict]:
    """(name, arguments) of a network ``{name: ..., **arguments}`` (earlier files: ``{_target_: ...}``), checked."""
    if not isinstance(net, dict):
        raise ConfigError(f"{where} must be a mapping with {NAME_KEY} (a registered network); got {net!r}")
    key = NAME_KEY if NAME_KEY in net else OLD_NAME_KEY
    named = net.get(key)  # an earlier file's _target_: the name, or mixsep.models.<name>, or its module's path
    package, _, name = named.rpartition(".") if key == OLD_NAME_KEY and isinstance(named, str) else ("", "", named)
    if not is_registered(name) or package not in ("", "mixsep.models", module_of(name)):
        raise ConfigError(
            f"{where} names {named!r}, which is not a registered network: {', '.join(registered_names())} (a "
            "network of your own: @register_network in a module named by extensions=[...] or MIXSEP_EXTENSIONS)"
        )
    arguments = {k: v for k, v in net.items() if k != key}
    check_plain(arguments, where)
    return name, arguments


def network_settings(net: Any, where: str = "model.net") -> dict:
    """A network's config (plain, or a Hydra node) as checkpoints record it: ``{name: ..., **plain arguments}``."""
    from omegaconf import OmegaConf

    name, arguments = network_spec(
        OmegaConf.to_container(net, resolve=True) if OmegaConf.is_config(net) else net, where
    )
    return {NAME_KEY: name, **arguments}


def build_network(net: dict, where: str = "model.net") -> nn.Module:
    """The network a checked config names, built with its plain arguments (a wrong argument: a ConfigError)."""
    name, arguments = network_spec(net, where)
    try:
        return architecture(name)(**arguments)
    except TypeError as err:
        raise ConfigError(f"{where} ({name}): {err}") from err
