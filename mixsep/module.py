"""The one LightningModule: losses, optimizer, metrics and logging for any separator network."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.functional.image import structural_similarity_index_measure
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

LOSSES = ("mse", "l1", "psnr", "mse+ssim", "psnr+ssim")


def image_metrics() -> MetricCollection:
    """SSIM and mean per-image PSNR, data range 1, as everywhere in mixsep."""
    return MetricCollection({
        "psnr": PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3)),
        "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
    })


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, kind: str, ssim_weight: float = 0.1) -> torch.Tensor:
    """Loss of one source. ``psnr`` = mean over images of log10(MSE): the metric's own objective."""
    pred = pred.float()
    if kind.startswith("mse"):
        loss = F.mse_loss(pred, target)
    elif kind == "l1":
        loss = F.l1_loss(pred, target)
    elif kind.startswith("psnr"):
        per_image = (pred - target).pow(2).mean(dim=(1, 2, 3))
        loss = torch.log10(per_image + 1e-6).mean() / 10  # = -PSNR / 100 + const
    else:
        raise ValueError(f"model.loss={kind!r} is not one of {LOSSES}")
    if kind.endswith("+ssim"):
        loss = loss + ssim_weight * (1 - structural_similarity_index_measure(pred, target, data_range=1.0))
    return loss


class SeparationModule(L.LightningModule):
    """Trains any ``net(mix) -> (mnist_hat, cifar_hat)``; scores each source on clamped predictions."""

    def __init__(self, net: dict | nn.Module, name: str = "separator", lr: float = 1e-3, weight_decay: float = 0.0,
                 loss: str = "mse", ssim_weight: float = 0.1, scheduler: str | None = None,
                 compile: bool = False, channels_last: bool = False) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"model.loss={loss!r} is not one of {LOSSES}")
        if scheduler not in (None, "onecycle", "cosine"):
            raise ValueError(f"model.scheduler={scheduler!r} is not one of null, onecycle, cosine")
        # The net's config (a dict with _target_) is saved with the checkpoint, so any checkpoint can be
        # rebuilt without the run's config files; an nn.Module instance is accepted for quick experiments.
        self.save_hyperparameters(ignore=[] if isinstance(net, dict) else ["net"])
        self.net = build_net(net)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        # kept out of the module tree, so the checkpoint holds the parameters once, under net.*
        object.__setattr__(self, "_compiled", _try_compile(self.net) if compile else None)
        self.metrics = nn.ModuleDict({
            f"{stage}_{source}": image_metrics()
            for stage in ("val", "test") for source in ("mnist", "cifar")
        })

    def forward(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.hparams.channels_last:
            mix = mix.contiguous(memory_format=torch.channels_last)
        mnist, cifar = (self.net if self._compiled is None else self._compiled)(mix)
        return mnist.float(), cifar.float()

    @torch.no_grad()
    def separate(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mnist, cifar = self(mix)
        return mnist.clamp(0, 1), cifar.clamp(0, 1)

    def _loss(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mix, mnist, cifar = batch
        mnist_hat, cifar_hat = self(mix)
        kind, w = self.hparams.loss, self.hparams.ssim_weight
        loss = reconstruction_loss(mnist_hat, mnist, kind, w) + reconstruction_loss(cifar_hat, cifar, kind, w)
        return loss, mnist_hat, cifar_hat

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, _, _ = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(batch[0]))
        return loss

    def _eval_step(self, batch, stage: str) -> None:
        loss, mnist_hat, cifar_hat = self._loss(batch)
        _, mnist, cifar = batch
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", batch_size=len(mnist))
        for source, pred, target in (("mnist", mnist_hat, mnist), ("cifar", cifar_hat, cifar)):
            self.metrics[f"{stage}_{source}"].update(pred.clamp(0, 1), target)

    def _eval_epoch_end(self, stage: str) -> None:
        for source in ("mnist", "cifar"):
            coll = self.metrics[f"{stage}_{source}"]
            for name, value in coll.compute().items():
                self.log(f"{stage}/{source}_{name}", value, prog_bar=stage == "val" and name == "psnr")
            coll.reset()

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay) \
            if self.hparams.weight_decay else torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        if self.hparams.scheduler is None:
            return opt
        steps = self.trainer.estimated_stepping_batches
        if self.hparams.scheduler == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.hparams.lr, total_steps=int(steps),
                                                        pct_start=0.15)
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def build_net(net: dict | nn.Module) -> nn.Module:
    if isinstance(net, nn.Module):
        return net
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    return instantiate(OmegaConf.create(dict(net)) if not OmegaConf.is_config(net) else net)


def _try_compile(net: nn.Module):
    """torch.compile where it works here; the eager module otherwise (with a note why)."""
    try:
        compiled = torch.compile(net)
        was_training = net.training
        net.eval()
        with torch.no_grad():  # compile now, so a missing compiler shows up here, not mid-run
            compiled(torch.rand(2, 3, 32, 32))
        net.train(was_training)
        return compiled
    except Exception as err:  # no C compiler, unsupported platform, ...
        print(f"mixsep: torch.compile is not available here ({type(err).__name__}: {err}); running eager.")
        return net
