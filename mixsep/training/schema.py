"""The configs' types and defaults, declared once: Hydra structured configs in its ConfigStore, named first in the
defaults lists of config.yaml, evaluate.yaml, model/_module.yaml, data/default.yaml and trainer/default.yaml, whose
values are presets over them. The groups' nodes take their types from the constructors' signatures (hydra-zen), so
a value of the wrong kind (``seed=abc``, ``model.lr=fast``) stops composition with OmegaConf's ValidationError.
A preset that builds another class turns its node's schema off (``override /data/schema@data: null``)."""

from __future__ import annotations

import enum
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import lightning as L
from hydra.core.config_store import ConfigStore
from hydra_zen import BuildsFn
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from mixsep.data.datamodule import MixDataModule
from mixsep.errors import ConfigError
from mixsep.models.module import SeparationModule
from mixsep.models.registry import NAME_KEY, OLD_NAME_KEY, architecture, network_spec


class Signature(BuildsFn):
    """hydra-zen's ``builds``, reading ``X | None`` as ``Optional[X]`` (which OmegaConf types) rather than Any."""

    @classmethod
    def _sanitized_type(cls, type_: Any, **kwargs: Any) -> Any:
        if isinstance(type_, types.UnionType):
            type_ = typing.Union[typing.get_args(type_)]  # noqa: UP007 (a runtime Union, not an annotation)
        return super()._sanitized_type(type_, **kwargs)


def signature_of(target: Any, **kwargs: Any) -> type:
    """A structured config of ``target``'s arguments, their types and defaults from its signature."""
    return Signature.builds(target, populate_full_signature=True, **kwargs)


class TestCkpt(str, enum.Enum):
    """The checkpoint a run tests after fitting."""

    best = "best"
    last = "last"


@dataclass
class Settings:
    """The top-level settings the training and evaluation commands share, beside the groups' nodes."""

    extensions: Any = field(default_factory=list)  # modules that declare networks, sources, scores: a list, or one word
    seed: int = 0
    experiment_name: str = MISSING
    samples: int = 8  # >= 0: check_settings
    ckpt_path: str | None = None
    data: Any = None
    trainer: Any = None
    paths: Any = None


@dataclass
class RunSettings(Settings):
    """config.yaml's (``python -m mixsep.run``)."""

    debug_mode: str | None = None
    optimized_metric: str = "val/psnr"  # val/...: check_settings
    test_ckpt: TestCkpt = TestCkpt.best
    float32_matmul_precision: str | None = None
    model: Any = None
    logger: Any = None
    callbacks: Any = None


@dataclass
class EvaluateSettings(Settings):
    """evaluate.yaml's (``python -m mixsep.evaluate``)."""

    ckpt_path: str = MISSING  # a model is needed: a missing value is one line (evaluate.py), never None's traceback
    tta: bool | None = None
    tta_color: bool | None = None
    tta_shift: bool = False


def check_settings(cfg: DictConfig) -> None:
    """What the settings' types cannot say."""
    if cfg.samples < 0:
        raise ConfigError(f"samples={cfg.samples} must be a whole number >= 0 (the test pairs in samples.png)")
    if not cfg.get("optimized_metric", "val/").startswith("val/"):
        raise ConfigError(
            f"optimized_metric={cfg.optimized_metric} must be a validation metric (val/...): sweeps select on "
            "the validation pairs, never on the test pairs."
        )


def check_network(net: DictConfig) -> None:
    """``model.net``'s arguments against the types of its registered class's signature (OmegaConf's validation),
    checked in the task: the class is known only once the extensions are imported. Arguments the signature does
    not name (``**kwargs``) are left to the class. ``_target_`` is Hydra's import path: never a network's name."""
    if OLD_NAME_KEY in net:
        target = str(net[OLD_NAME_KEY])
        raise ConfigError(
            f"model.net names its network under _target_ ({target}), Hydra's import path: name it by its registered "
            f"name instead, model.net.{NAME_KEY}={target.rpartition('.')[2]} (in a YAML, {NAME_KEY}: ...)"
        )
    name, given = network_spec(OmegaConf.to_container(net, resolve=True))
    schema = OmegaConf.structured(signature_of(architecture(name)))
    try:
        OmegaConf.merge(schema, {key: value for key, value in given.items() if key in schema})
    except ValidationError as err:
        key, said = err.full_key, err.msg.splitlines()[0]
        raise ConfigError(f"model.net.{key}={err.value!r} does not fit {name}'s {key}: {said}") from None


def register_schemas() -> None:
    """The schemas, in Hydra's ConfigStore under the names the YAML files give them."""
    store = ConfigStore.instance()
    store.store(name="_run_schema", node=RunSettings)
    store.store(name="_evaluate_schema", node=EvaluateSettings)
    store.store(group="model", name="_schema", node=signature_of(SeparationModule))
    store.store(group="data/schema", name="mix_data", node=signature_of(MixDataModule))
    # the loggers and callbacks come from their own groups
    store.store(group="trainer", name="_schema", node=signature_of(L.Trainer, zen_exclude=("logger", "callbacks")))
