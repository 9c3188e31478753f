"""Use a trained model: ``load_separator("run.ckpt")(mix) -> (mnist_hat, cifar_hat)``."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from mixsep.data.sources import DEFAULT_SOURCES
from mixsep.errors import CheckpointError, MixsepError
from mixsep.models.module import SeparationModule


def load_module(ckpt_path: str | Path, map_location: str | torch.device = "cpu") -> SeparationModule:
    path = Path(ckpt_path)
    if not path.is_file():
        raise CheckpointError(
            f"No checkpoint at {path}. Pass ckpt_path= a .ckpt written by mixsep.run "
            "(<run dir>/checkpoints/last.ckpt or best-*.ckpt)."
        )
    try:
        module = module_class(path).load_from_checkpoint(path, map_location=map_location, weights_only=False)
    except MixsepError:
        raise
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        if "Error(s) in loading state_dict" in first or isinstance(err, (KeyError, TypeError, ImportError)):
            raise CheckpointError(
                f"{path}: its weights or settings do not fit the networks of this mixsep version "
                f"({type(err).__name__}: {first[:160]}); it was written by another version. Evaluate it with the "
                "mixsep version that wrote it, or retrain (python -m mixsep.run ...)."
            ) from err
        raise CheckpointError(
            f"{path} is not a readable mixsep checkpoint ({type(err).__name__}: {first[:160]}). "
            "It may be truncated or come from another program; use a .ckpt that mixsep.run wrote."
        ) from err
    return module.eval()


def module_class(ckpt_path: str | Path) -> type[SeparationModule]:
    """The LightningModule a checkpoint was trained with: a separator, or an earlier report's one-image
    system (whose network gives back one image)."""
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
        target = ckpt["hyper_parameters"]["net"]["_target_"]
        from hydra.utils import get_class

        one_image = getattr(get_class(target), "outputs", "sources") == "image"
    except Exception:  # unreadable: load_from_checkpoint says why
        return SeparationModule
    if one_image:  # an earlier report's system
        from mixsep.prior.module import OneImageModule

        return OneImageModule
    return SeparationModule


def _checkpoint_field(ckpt_path: str | Path, key: str, default: str) -> str:
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
        return str(ckpt.get(key) or default)
    except Exception:
        return default


def checkpoint_precision(ckpt_path: str | Path) -> str:
    """The precision a checkpoint's run trained and tested at (32-true when it does not say)."""
    return _checkpoint_field(ckpt_path, "mixsep_precision", "32-true")


def checkpoint_sources(ckpt_path: str | Path) -> str:
    """The source pair a checkpoint was trained on (checkpoints from before sources existed: the default)."""
    return _checkpoint_field(ckpt_path, "mixsep_sources", DEFAULT_SOURCES)


class Separator:
    """A trained separator in eval mode: call it on mean images (B, 3, 32, 32) in [0, 1]."""

    test_time_ensemble: str | None = None  # which self-ensemble it separates with, and its passes per image

    def __init__(self, module: SeparationModule) -> None:
        self.module = module.eval()

    @property
    def device(self) -> torch.device:
        return self.module.device

    def to(self, device: str | torch.device) -> Separator:
        self.module.to(device)
        return self

    @torch.no_grad()
    def __call__(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(mix, torch.Tensor) or mix.ndim != 4 or tuple(mix.shape[1:]) != (3, 32, 32):
            shape = tuple(mix.shape) if isinstance(mix, torch.Tensor) else type(mix).__name__
            raise ValueError(f"mix must be a float tensor of shape (B, 3, 32, 32) in [0, 1]; got {shape}")
        if not mix.is_floating_point():
            raise ValueError(f"mix must be a float tensor in [0, 1]; got dtype {mix.dtype} (divide uint8 by 255)")
        mnist, cifar = self.module.separate(mix.to(self.device, torch.float32))
        return mnist, cifar


def load_separator(
    ckpt_path: str | Path,
    device: str | torch.device = "cpu",
    tta: bool | None = None,
    tta_color: bool | None = None,
    tta_shift: bool = False,
) -> Separator:
    """A checkpoint's separator. ``tta`` / ``tta_color``: with the self-ensemble over the 8 flips/rotations / the
    6 RGB orders (None: as the checkpoint's run tested, said in the log with the passes an image costs);
    ``tta_shift``: over one-pixel shifts. ``Separator.test_time_ensemble`` says which are on."""
    module = load_module(ckpt_path, map_location=device)
    if not isinstance(module, SeparationModule):
        raise CheckpointError(
            f"{ckpt_path} holds a {module.hparams.get('name', 'one-image')} model, which gives back one image "
            "(an earlier report's system), not the two sources; separate with a separator's checkpoint, e.g. "
            "results/best_cpu/model.ckpt"
        )
    hparams = module.hparams
    dihedral = hparams.get("tta", False) if tta is None else tta
    color = hparams.get("tta_color", False) if tta_color is None else tta_color
    description = module.use_test_time_ensemble(bool(dihedral), bool(color), tta_shift)
    if description:
        logging.getLogger("mixsep").info(f"{Path(ckpt_path).name}: {description}")
    separator = Separator(module)
    separator.test_time_ensemble = description
    return separator
