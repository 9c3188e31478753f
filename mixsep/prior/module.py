"""The earlier reports' one-image systems (``experiment=prior/...``): autoencoders of the mean image (reports 001,
003), scored on their reconstruction of the mix, and CIFAR-10 autoencoders and denoisers (report 004). Report 001's
"separation" used the other image's ground truth: it is computed only under ``oracle/`` keys, and never ranked."""

from __future__ import annotations

import torch
from torch import nn

from mixsep.models.losses import reconstruction_loss
from mixsep.models.metrics import image_metrics
from mixsep.models.module import MixsepModule, build_net, check_recipe
from mixsep.models.registry import network_settings

ORACLES = ("oracle_mnist", "oracle_cifar")


def score_prefix(stage: str, name: str) -> str:
    """``{stage}/mix_*``; a CIFAR-10 task's ``{stage}/{psnr,ssim}``; ground-truth "separations" only under
    ``oracle/`` (``oracle/{source}_*`` on test, ``oracle/{stage}_{source}_*`` otherwise)."""
    if name.startswith("oracle_"):
        source = name.removeprefix("oracle_")
        return f"oracle/{source}_" if stage == "test" else f"oracle/{stage}_{source}_"
    return f"{stage}/" if name == "image" else f"{stage}/{name}_"


class OneImageModule(MixsepModule):
    """A network with one output image: the mix's reconstruction (``task=separate``: batches of mix, MNIST,
    CIFAR) or a CIFAR-10 image's (``reconstruct``, ``denoise``: batches of input, target); ``val/psnr`` is the
    validation objective."""

    def __init__(
        self,
        net: dict | nn.Module,
        name: str = "one_image",
        task: str = "separate",
        normalize: bool = False,
        lr: float = 1e-3,
        loss: str = "mse",
        ssim_weight: float = 0.1,
    ):
        super().__init__()
        check_recipe(lr, loss, None)
        self.save_hyperparameters(ignore=["net"])
        if not isinstance(net, nn.Module):
            net = self.hparams["net"] = network_settings(net)
        self.net = build_net(net)
        self.example_input_array = torch.zeros(1, 3, 32, 32)
        self.scored = ["mix", *ORACLES] if task == "separate" else ["image"]
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_{n}": image_metrics().clone(prefix=score_prefix(stage, n))
                for stage in ("val", "test")
                for n in self.scored
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.normalize:  # mean 0.5, std 0.5: the net works on [-1, 1] images
            x = x * 2 - 1
        out = self.net(x).float()
        return out * 0.5 + 0.5 if self.hparams.normalize else out  # back to [0, 1] before any loss or score

    def _predict(self, batch) -> tuple[torch.Tensor, list[tuple[str, torch.Tensor, torch.Tensor]]]:
        kind, w = self.hparams.loss, self.hparams.ssim_weight
        if len(batch) == 2:  # a CIFAR-10 task's (input, target)
            out = self(batch[0])
            return reconstruction_loss(out, batch[1], kind, w), [("image", out, batch[1])]
        mix, mnist, cifar = batch
        recon = self(mix)
        # oracle: "separates" with the ground truth of the other image (report 001); never a score
        oracles = [("oracle_mnist", 2 * recon - cifar, mnist), ("oracle_cifar", 2 * recon - mnist, cifar)]
        return reconstruction_loss(recon, mix, kind, w), [("mix", recon, mix), *oracles]

    def _eval_step(self, batch, stage: str) -> None:
        loss, scored = self._predict(batch)
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", batch_size=len(batch[0]))
        for name, pred, target in scored:
            self.metrics[f"{stage}_{name}"].update(pred, target)

    def _eval_epoch_end(self, stage: str) -> None:
        for name in self.scored:
            values = self.metrics[f"{stage}_{name}"].compute()
            self.log_dict(values, prog_bar=stage == "val" and not name.startswith("oracle"))
            self.metrics[f"{stage}_{name}"].reset()
            if stage == "val" and name == "mix":  # the image tasks' val/psnr is their own score
                self.log("val/psnr", values[f"{score_prefix(stage, name)}psnr"])

    @torch.no_grad()
    def picture_columns(self, batch: tuple[torch.Tensor, ...]) -> tuple[list[torch.Tensor], tuple[str, ...]]:
        out = self(batch[0]).clamp(0, 1)
        if len(batch) == 3:
            return [batch[0], out], ("mix", "reconstructed mix")
        return [batch[0], out, batch[1]], ("input", "output", "target")

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
