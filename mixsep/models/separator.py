"""Use a trained model: ``load_separator()(mix) -> (gray_hat, color_hat)``.

A model is a bundle folder (``python -m mixsep.export``) or a checkpoint; both are read as data only
(``saved.py``). Separating needs neither Lightning nor Hydra: the network is a plain ``nn.Module``.
"""

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
from mixsep.pretrained import DEFAULT_MODEL


def build_saved_network(saved: SavedModel) -> nn.Module:
    """The saved network with its weights, in eval mode."""
    try:
        net = build_network(saved.net_config, f"{saved.path}: its network")
        net.load_state_dict(saved.net_state_dict())
    except (ConfigError, RuntimeError) as err:
        raise does_not_fit(saved.path, err) from err
    return net.eval()


# the LightningModule of each kind of network (its class's ``outputs``), imported only when a file of that kind is
# loaded: the earlier reports' one-image systems live in prior/, which builds on this package (never the reverse)
LIGHTNING_MODULES = {"sources": "mixsep.models.module.SeparationModule", "image": "mixsep.prior.module.OneImageModule"}


def load_module(path: str | Path, map_location: str | torch.device = "cpu"):
    """The LightningModule of a checkpoint or bundle, in eval mode: a separator's SeparationModule, or an earlier
    report's one-image system's OneImageModule."""
    load_extensions()  # MIXSEP_EXTENSIONS: a network of one's own that the file names
    saved = read_model(path, map_location)
    where, _, name = LIGHTNING_MODULES[getattr(architecture(saved.architecture), "outputs", "sources")].rpartition(".")
    cls = getattr(importlib.import_module(where), name)
    takes = inspect.signature(cls.__init__).parameters
    # settings of earlier versions that this one no longer takes (batch_size) are left out
    hparams = {k: v for k, v in saved.hyper_parameters.items() if k in takes}
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
    """A model's separator (a bundle folder or a checkpoint). ``tta`` / ``tta_color``: with the self-ensemble
    over the 8 flips/rotations / the 6 RGB orders (None: as the model's run tested, said in the log with the
    passes an image costs); ``tta_shift``: over one-pixel shifts. ``Separator.test_time_ensemble`` says which
    are on. Every refusal (a file that is not a mixsep model, settings that do not describe its weights, a network
    module not loaded, a bad ``MIXSEP_EXTENSIONS``) is a ``MixsepError`` whose message is one line."""
    from mixsep.models.tta import test_time_ensemble

    load_extensions()  # MIXSEP_EXTENSIONS: a network of one's own that the file names, as every command does
    saved = read_model(path, device)
    if getattr(architecture(saved.architecture), "outputs", "sources") != "sources":
        raise CheckpointError(
            f"{path} holds a {saved.settings.get('name', 'one-image')} model, which gives back one image "
            "(an earlier report's system), not the two sources; separate with a separator, e.g. the shipped "
            "one (load_separator())"
        )
    channels_last = bool(saved.settings.get("channels_last"))
    net = build_saved_network(saved).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    separator = Separator(net, channels_last)
    dihedral = saved.settings.get("tta", False) if tta is None else tta
    color = saved.settings.get("tta_color", False) if tta_color is None else tta_color
    ensemble, description = test_time_ensemble(net, bool(dihedral), bool(color), tta_shift)
    if description:
        separator.ensemble = ensemble
        logging.getLogger("mixsep").info(f"{Path(path).name}: {description}")
    separator.test_time_ensemble = description
    return separator
