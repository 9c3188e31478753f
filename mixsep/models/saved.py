"""Reading a trained model from a file someone may have sent: a Lightning checkpoint (``.ckpt``) or a model
bundle (a folder: ``model.safetensors``, ``config.json``, ``README.md``; ``python -m mixsep.export`` writes one).

Nothing read runs code: checkpoints go through PyTorch's weights-only unpickler (plain containers, numbers,
strings and tensors; no other object is rebuilt), bundles hold tensors (safetensors) and JSON, and the network
either names is looked up among mixsep's own (``registry.py``) with plain arguments.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mixsep.data.sources import DEFAULT_SOURCES
from mixsep.errors import CheckpointError, ConfigError
from mixsep.models.registry import check_plain, network_spec

BUNDLE_FORMAT = "mixsep-bundle"
WEIGHTS_FILE, CONFIG_FILE, CARD_FILE, ONNX_FILE = "model.safetensors", "config.json", "README.md", "model.onnx"
# settings a file may not set when it is loaded: they name or read other files on the receiver's machine
NOT_FROM_FILES = ("pretrained_weights",)


@dataclass
class SavedModel:
    """What a model file holds, checked: its network (a registered name and plain arguments), the
    LightningModule's other settings, the weights (the module's keys: ``net.*``), and what it was trained on."""

    path: Path
    architecture: str
    arguments: dict
    settings: dict  # the module's hyper-parameters besides the network (name, lr, loss, tta, ...)
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    precision: str = "32-true"
    sources: str = DEFAULT_SOURCES
    extra: dict = field(default_factory=dict)  # a bundle's config.json as written; {} for a checkpoint

    @property
    def net_config(self) -> dict:
        """The network as a config node (``_target_`` the public path, as checkpoints write it)."""
        return {"_target_": f"mixsep.models.{self.architecture}", **self.arguments}

    @property
    def hyper_parameters(self) -> dict:
        return {**self.settings, "net": self.net_config}

    def net_state_dict(self) -> dict[str, torch.Tensor]:
        return {k.removeprefix("net."): v for k, v in self.state_dict.items() if k.startswith("net.")}


def read_model(path: str | Path, map_location: str | torch.device = "cpu") -> SavedModel:
    """The model in ``path``: a checkpoint file or a bundle folder (one-line CheckpointErrors otherwise)."""
    path = Path(path)
    if path.is_dir():
        return read_bundle(path, map_location)
    if not path.is_file():
        raise CheckpointError(
            f"No model at {path}. Pass a bundle folder (python -m mixsep.export writes one) or a .ckpt written by "
            "mixsep.run (<run dir>/checkpoints/last.ckpt or best-*.ckpt)."
        )
    return checkpoint_model(path, read_checkpoint(path, map_location))


def checkpoint_model(path: Path, ckpt: dict) -> SavedModel:
    """The checked model in a checkpoint already read (``read_checkpoint``)."""
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(hparams, dict) or not isinstance(state, dict) or "net" not in hparams:
        raise CheckpointError(
            f"{path} is a checkpoint without a mixsep network's settings and weights: it comes from another "
            "program. Use a .ckpt that mixsep.run wrote, or a bundle from python -m mixsep.export."
        )
    return _checked(path, hparams, state, ckpt.get("mixsep_precision"), ckpt.get("mixsep_sources"))


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint through PyTorch's weights-only unpickler: a file whose pickle would rebuild anything but
    plain data and tensors is refused, and nothing in it runs."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        lines = str(err).splitlines()
        what = next((line.strip() for line in lines if "GLOBAL" in line or "Unsupported" in line), "refused")
        raise CheckpointError(
            f"{path} holds pickled objects that are not plain data ({what[:160]}): mixsep reads only weights and "
            "plain settings, so it ran nothing from this file and will not load it. Ask its author for a bundle "
            "(python -m mixsep.export CKPT DIR)."
        ) from err
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(err).__name__}: {first[:160]}); it may be truncated or "
            "come from another program. Use a .ckpt that mixsep.run wrote."
        ) from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, not a mixsep checkpoint.")
    return ckpt


def read_bundle(folder: Path, map_location: str | torch.device = "cpu") -> SavedModel:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise CheckpointError(
            f"{folder} is not a mixsep model bundle: it needs {CONFIG_FILE} and {WEIGHTS_FILE} "
            "(python -m mixsep.export CKPT DIR writes them)"
        )
    try:
        config = json.loads(config_path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{config_path} is not valid JSON ({err}); export the bundle again") from err
    if not isinstance(config, dict) or config.get("format") != BUNDLE_FORMAT:
        raise CheckpointError(f"{config_path} is not a mixsep bundle's config (its format is not {BUNDLE_FORMAT})")
    try:
        weights = load_file(weights_path, device=str(map_location))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file ({err}); export it again") from err
    net = {"_target_": config.get("architecture"), **(config.get("arguments") or {})}
    hparams = {**(config.get("settings") or {}), "net": net}
    state = {f"net.{k}": v for k, v in weights.items()}
    return _checked(folder, hparams, state, config.get("precision"), config.get("sources"), config)


def _checked(path: Path, hparams: dict, state: dict, precision: Any, sources: Any, extra: dict | None = None):
    try:
        architecture, arguments = network_spec(hparams["net"], f"{path}: its network")
        settings = {k: v for k, v in hparams.items() if k != "net"}
        check_plain(settings, f"{path}: its settings")
        check_plain([precision, sources], f"{path}: its precision and sources")
    except ConfigError as err:
        raise CheckpointError(f"{err}; nothing from the file was run. Use a model that mixsep wrote.") from err
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path}: its weights are not a mapping of names to tensors")
    arguments = {k: (None if k in NOT_FROM_FILES else v) for k, v in arguments.items()}
    return SavedModel(
        path=path,
        architecture=architecture,
        arguments=arguments,
        settings=settings,
        state_dict=state,
        precision=str(precision or "32-true"),
        sources=str(sources or DEFAULT_SOURCES),
        extra=extra or {},
    )
