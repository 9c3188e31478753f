"""The earlier reports' one-image systems, kept to reproduce them (``experiment=prior/...``): autoencoders of
the mean image (report 001, 003), scored on their reconstruction of the mix, and CIFAR-10 autoencoders and
denoisers (report 004). None of them separates. Report 001's "separation" used the ground truth of the other
image: it is computed here only under ``oracle/`` keys, labelled as such, and never ranked."""

from __future__ import annotations

import torch

from mixsep.losses import reconstruction_loss
from mixsep.module import SeparationModule


class OneImageModule(SeparationModule):
    """A network with one output image (``net.outputs == "image"``): the mix's reconstruction (data.task
    separate) or a CIFAR-10 image's (reconstruct, denoise)."""

    reference_names = ("oracle_mnist", "oracle_cifar")

    def _scored_names(self, task: str, outputs: str, normalize: bool, subtraction: bool) -> list[str]:
        if outputs == "sources":
            raise ValueError("a separator (two outputs) is trained by mixsep.module.SeparationModule")
        return ["mix", *self.reference_names] if task == "separate" else ["image"]

    @property
    def objective_sources(self) -> tuple[str, ...]:  # val/psnr: the mix's PSNR (an image task logs it as such)
        return ("mix",)

    def metric_prefix(self, stage: str, name: str) -> str:
        """``{stage}/mix_*``; a CIFAR-10 task's ``{stage}/{psnr,ssim}``; ground-truth "separations" only under
        ``oracle/`` (``oracle/{source}_*`` on test, ``oracle/{stage}_{source}_*`` otherwise)."""
        if name.startswith("oracle_"):
            source = name.removeprefix("oracle_")
            return f"oracle/{source}_" if stage == "test" else f"oracle/{stage}_{source}_"
        return f"{stage}/" if name == "image" else f"{stage}/{name}_"

    def _predict(self, batch) -> tuple[torch.Tensor, list[tuple[str, torch.Tensor, torch.Tensor]]]:
        kind, w = self.hparams.loss, self.hparams.ssim_weight
        if len(batch) == 3:  # the mean image and its two sources
            mix, mnist, cifar = batch
            (recon,) = self(mix)
            # oracle: "separates" with the ground truth of the other image (report 001); never a score
            return reconstruction_loss(recon, mix, kind, w), [
                ("mix", recon, mix),
                ("oracle_mnist", 2 * recon - cifar, mnist),
                ("oracle_cifar", 2 * recon - mnist, cifar),
            ]
        x, target = batch
        (out,) = self(x)
        return reconstruction_loss(out, target, kind, w), [("image", out, target)]

    @torch.no_grad()
    def picture_columns(self, batch: tuple[torch.Tensor, ...]) -> tuple[list[torch.Tensor], tuple[str, ...]]:
        (out,) = (o.clamp(0, 1) for o in self(batch[0]))
        if len(batch) == 3:
            return [batch[0], out], ("mix", "reconstructed mix")
        return [batch[0], out, batch[1]], ("input", "output", "target")

    def separate(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise ValueError(f"model {self.hparams.name!r} reconstructs one image; it does not separate the mix")
