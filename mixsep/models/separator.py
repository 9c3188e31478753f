"""Use a trained model: ``load_separator()(mix) -> (gray_hat, color_hat)``. A model (a bundle folder or a
checkpoint) is read as data only (``saved.py``); separating needs neither Lightning nor Hydra."""

from __future__ import annotations

import importlib
import inspect
import logging
from pathlib import Path

import torch
from torch import nn

from mixsep.errors import CheckpointError, ConfigError
from mixsep.extensions import load_extensions
from mixsep.models.registry import architecture, build_network
from mixsep.models.saved import SavedModel, does_not_fit, read_model
from mixsep.models.tta import test_time_ensemble
from mixsep.pretrained import DEFAULT_MODEL

# the LightningModule of each kind of network (its class's ``outputs``), imported only when a file of that kind is
# loaded: the earlier reports' one-image systems live in prior/, which builds on this package (never the reverse)
LIGHTNING_MODULES = {"sources": "mixsep.models.module.SeparationModule", "image": "mixsep.prior.module.OneImageModule"}


def _read(path: str | Path, map_location: str | torch.device) -> tuple[SavedModel, str]:
    """The model in ``path`` and what its network gives back (its class's ``outputs``: sources or image)."""
    load_extensions()  # MIXSEP_EXTENSIONS: a network of one's own that the file names, as every command does
    saved = read_model(path, map_location)
    return saved, getattr(architecture(saved.architecture), "outputs", "sources")


def load_module(path: str | Path, map_location: str | torch.device = "cpu"):
    """The LightningModule of a checkpoint or bundle, in eval mode (a one-image system's: OneImageModule)."""
    saved, outputs = _read(path, map_location)
    where, _, name = LIGHTNING_MODULES[outputs].rpartition(".")
    cls = getattr(importlib.import_module(where), name)
    takes = inspect.signature(cls.__init__).parameters
    # settings of earlier versions that this one no longer takes (batch_size) are left out; a model read back to be
    # scored or exported runs eager (compiling its graphs would take longer than scoring with them)
    hparams = {k: v for k, v in {**saved.hyper_parameters, "compile": False}.items() if k in takes}
    try:
        module = cls(**hparams)
        module.load_state_dict(saved.state_dict)
    except (ConfigError, TypeError, RuntimeError) as err:
        raise does_not_fit(saved.path, err) from err
    module.mixsep_saved = saved  # what the file says it was trained on and tested at
    return module.to(map_location).eval()


class Separator:
    """A trained separator in eval mode: call it on mean images (B, 3, 32, 32) in [0, 1]."""

    test_time_ensemble: str | None = None  # which self-ensemble it separates with, and its passes per image

    def __init__(self, net: nn.Module, channels_last: bool = False) -> None:
        self.net, self.channels_last = net.eval(), channels_last
        self.ensemble: nn.Module | None = None

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: str | torch.device) -> Separator:
        self.net.to(device)
        return self

    @torch.no_grad()
    def __call__(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(mix, torch.Tensor) or mix.ndim != 4 or tuple(mix.shape[1:]) != (3, 32, 32):
            shape = tuple(mix.shape) if isinstance(mix, torch.Tensor) else type(mix).__name__
            raise ValueError(f"mix must be a float tensor of shape (B, 3, 32, 32) in [0, 1]; got {shape}")
        if not mix.is_floating_point():
            raise ValueError(f"mix must be a float tensor in [0, 1]; got dtype {mix.dtype} (divide uint8 by 255)")
        x = mix.to(self.device, torch.float32)
        if self.channels_last:  # as the run trained and tested: the same arithmetic, the same outputs
            x = x.contiguous(memory_format=torch.channels_last)
        mnist, cifar = (self.ensemble or self.net)(x)
        return mnist.float().clamp(0, 1), cifar.float().clamp(0, 1)


def load_separator(
    path: str | Path = DEFAULT_MODEL,
    device: str | torch.device = "cpu",
    tta: bool | None = None,
    tta_color: bool | None = None,
    tta_shift: bool = False,
) -> Separator:
    """A model's separator (a bundle folder or a checkpoint). ``tta`` / ``tta_color``: with the self-ensemble over
    the 8 flips/rotations / the 6 RGB orders (None: as the model's run tested); ``tta_shift``: over one-pixel
    shifts (``Separator.test_time_ensemble`` says which). Every refusal is a ``MixsepError`` of one line."""
    saved, outputs = _read(path, device)
    if outputs != "sources":
        raise CheckpointError(
            f"{path} holds a {saved.settings.get('name', 'one-image')} model, which gives back one image "
            "(an earlier report's system), not the two sources; separate with a separator, e.g. the shipped "
            "one (load_separator())"
        )
    try:
        net = build_network(saved.net_config, f"{saved.path}: its network")
        net.load_state_dict(saved.net_state_dict())
    except (ConfigError, RuntimeError) as err:
        raise does_not_fit(saved.path, err) from err
    channels_last = bool(saved.settings.get("channels_last"))
    net = net.eval().to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    separator = Separator(net, channels_last)
    dihedral = saved.settings.get("tta", False) if tta is None else tta
    color = saved.settings.get("tta_color", False) if tta_color is None else tta_color
    ensemble, separator.test_time_ensemble = test_time_ensemble(net, bool(dihedral), bool(color), tta_shift)
    if separator.test_time_ensemble:
        separator.ensemble = ensemble
        logging.getLogger("mixsep").info(f"{Path(path).name}: {separator.test_time_ensemble}")
    return separator
