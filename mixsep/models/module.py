"""The one LightningModule: training and evaluation steps, optimiser, schedule and score logging for any separator
network (losses: losses.py; scores: metrics.py; schedules: schedules.py)."""

from __future__ import annotations

import logging
import math

import lightning as L
import torch
from torch import nn
from torchmetrics import CatMetric, MetricCollection

from mixsep.errors import ConfigError, TrainingDivergedError
from mixsep.models.losses import LOSSES, reconstruction_loss
from mixsep.models.metrics import SCORES, SOURCES, ScoreValues
from mixsep.models.registry import build_network, network_settings
from mixsep.models.schedules import SCHEDULERS, SCHEDULES, fit_to_new_budget
from mixsep.models.tta import test_time_ensemble

SAMPLE_COLUMNS = ("mix", "true MNIST", "predicted MNIST", "true CIFAR", "predicted CIFAR")


def attached(module: L.LightningModule) -> bool:
    """Whether a Trainer runs the module (Lightning's ``trainer`` property raises when none does)."""
    try:
        return module.trainer is not None
    except RuntimeError:
        return False


class MixsepModule(L.LightningModule):
    """What every mixsep LightningModule does alike: the training step (a diverged run stopped), the validation and
    test passes (the subclass's ``_eval_step`` / ``_eval_epoch_end``) and what a checkpoint records of the run. A
    subclass gives ``_predict(batch) -> (loss, scored)``."""

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, _ = self._predict(batch)
        self._check_finite(loss)
        self.log(
            "train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(batch[0]), sync_dist=True
        )
        return loss

    def _check_finite(self, loss: torch.Tensor) -> None:
        """Stop a diverged run before NaN weights reach a checkpoint: every step on the CPU; on a GPU the flag
        accumulates on the device and is read every ``log_every_n_steps``, so its queue is not drained each step."""
        bad = ~torch.isfinite(loss.detach())
        self._diverged = bad if getattr(self, "_diverged", None) is None else self._diverged | bad
        every = self.trainer.log_every_n_steps if attached(self) else 1
        if loss.device.type != "cpu" and self.global_step % max(every, 1):
            return
        if self._diverged.item():
            raise TrainingDivergedError(
                f"the training loss became {loss.item()} at step {self.global_step} (epoch {self.current_epoch}): "
                f"training diverged. Lower the learning rate (model.lr={self.hparams.lr:g}, try a tenth) or use "
                "model.scheduler=onecycle; the checkpoints written so far stay in <run dir>/checkpoints/."
            )

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")
        # how many test pairs were really scored (all ranks): metrics.json says so, and marks a partial test
        self.log("test/pairs", float(len(batch[0])), reduce_fx="sum", sync_dist=True, batch_size=len(batch[0]))

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the module that registered the network: a receiver without it is told which one it needs
        checkpoint["mixsep_network_module"] = type(self.net).__module__
        # so that mixsep.evaluate scores a checkpoint at the precision it was tested at after training
        if attached(self):
            checkpoint["mixsep_precision"] = str(self.trainer.precision)
            checkpoint["mixsep_sources"] = getattr(self.trainer.datamodule, "sources", None)


class SeparationModule(MixsepModule):
    """Trains any separator network (``net(mix) -> (mnist, cifar)``) and scores its clamped estimates:
    ``{stage}/{mnist,cifar}_{score}`` (and ``cifar_sub_*``, CIFAR := 2·mix − MNIST estimate, with
    ``subtraction_metrics``); ``val/psnr``, the mean of the two PSNRs, is the validation objective. ``tta`` /
    ``tta_color`` record how the run validated and tested (``use_test_time_ensemble`` switches them on)."""

    def __init__(
        self,
        net: dict | nn.Module,
        name: str = "separator",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        loss: str = "mse",
        ssim_weight: float = 0.1,
        scheduler: str | dict | None = None,
        optimizer: dict | None = None,
        compile: bool = False,
        channels_last: bool = False,
        subtraction_metrics: bool = False,
        tta: bool = False,
        tta_color: bool = False,
    ) -> None:
        super().__init__()
        # a schedule of mixsep's by name, or any torch scheduler (and optimizer) as a _partial_ config, kept with the
        # run's config and not in the model file, whose settings are plain data
        self.scheduler_config = None if scheduler is None or isinstance(scheduler, str) else check_config(scheduler)
        scheduler = None if self.scheduler_config else scheduler
        check_recipe(lr, loss, scheduler)
        # the net's config is saved with the checkpoint (any checkpoint rebuilds without the run's config files)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.hparams["scheduler"] = scheduler
        if not isinstance(net, nn.Module):
            net = self.hparams["net"] = network_settings(net)
        self.optimizer_config = check_config(optimizer or {"_target_": "torch.optim.Adam"}, "model.optimizer")
        self.net = build_net(net)
        if getattr(self.net, "outputs", "sources") != "sources":
            raise ConfigError(
                f"model.net ({type(self.net).__name__}) gives back one image: an earlier report's system, trained "
                "by mixsep.prior.module.OneImageModule (model=mean_ae or model=cifar_ae use it)"
            )
        check_contract(self.net)
        # one mean image: the model summary then shows each layer's sizes and the real FLOPs (not 0)
        self.example_input_array = torch.zeros(1, 3, 32, 32)
        self.scored = ["mnist", "cifar"] + (["cifar_sub"] if subtraction_metrics else [])
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        # kept out of the module tree, so the checkpoint holds the parameters once, under net.*
        object.__setattr__(self, "_compiled", _try_compile(self.net) if compile else None)
        object.__setattr__(self, "_ensemble", None)  # a test-time self-ensemble around the net, when chosen
        # per stage: each declared score of each scored image, and where its pair stands in the fixed order
        scores = {f"{image}_{key}": ScoreValues(score) for image in self.scored for key, score in SCORES.items()}
        collection = MetricCollection({**scores, "pair": CatMetric()}, compute_groups=False)
        self.metrics = nn.ModuleDict({stage: collection.clone(prefix=f"{stage}/") for stage in ("val", "test")})
        self.per_pair_scores: dict[str, dict] = {}  # stage -> pair, {mnist,cifar}_{score}: one value per pair

    def use_test_time_ensemble(self, dihedral: bool = False, color: bool = False, shift: bool = False) -> str | None:
        """Validate, test and separate with a self-ensemble (``models/tta.py``) from now on; the sentence that says
        which and what it costs, also logged (None: the plain network)."""
        net = self.net if self._compiled is None else self._compiled
        ensemble, description = test_time_ensemble(net, dihedral, color, shift)
        object.__setattr__(self, "_ensemble", ensemble if description else None)
        if description:
            logging.getLogger("mixsep").info(description)
        return description

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        net = self.net if self._compiled is None else self._compiled
        if self._ensemble is not None and not self.training:
            net = self._ensemble
        return tuple(o.float() for o in net(x))  # two estimates: check_contract

    @torch.no_grad()
    def separate(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gray, color = self(mix)
        return gray.clamp(0, 1), color.clamp(0, 1)

    def _predict(self, batch) -> tuple[torch.Tensor, list[tuple[str, torch.Tensor, torch.Tensor]]]:
        """The loss and the (name, prediction, target) triples to score."""
        kind, w = self.hparams.loss, self.hparams.ssim_weight
        mix, gray, color = batch
        gray_hat, color_hat = self(mix)
        loss = reconstruction_loss(gray_hat, gray, kind, w) + reconstruction_loss(color_hat, color, kind, w)
        scored = [("mnist", gray_hat, gray), ("cifar", color_hat, color)]
        if "cifar_sub" in self.scored:
            scored.append(("cifar_sub", 2 * mix - gray_hat, color))
        return loss, scored

    @torch.no_grad()
    def picture_columns(self, batch: tuple[torch.Tensor, ...]) -> tuple[list[torch.Tensor], tuple[str, ...]]:
        """samples.png's columns and titles: mix | true MNIST | predicted MNIST | true CIFAR | predicted CIFAR."""
        mix, gray, color = batch
        gray_hat, color_hat = (o.clamp(0, 1) for o in self(mix))
        return [mix, gray, gray_hat, color, color_hat], SAMPLE_COLUMNS

    def loss_and_outputs(self, batch) -> tuple[torch.Tensor, ...]:
        """Loss and the network's outputs (tests and benchmarks use this)."""
        loss, scored = self._predict(batch)
        return (loss, *(pred for name, pred, _ in scored if name != "cifar_sub"))

    def _eval_step(self, batch, stage: str) -> None:
        loss, scored = self._predict(batch)
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", batch_size=len(batch[0]), sync_dist=True)
        metrics = self.metrics[stage]
        for name, pred, target in scored:
            for score in SCORES:
                metrics[f"{name}_{score}"].update(pred, target)
        metrics["pair"].update(self._pair_positions(metrics["pair"], len(batch[0])))

    def _pair_positions(self, seen: CatMetric, n: int) -> torch.Tensor:
        """Where this process's next ``n`` pairs stand in the fixed order of the pairs: the samplers give process
        r of W the pairs r, r + W, r + 2W, ... (data/pairs.py), and ``seen`` holds those it scored before."""
        rank, world = (self.global_rank, self.trainer.world_size) if attached(self) else (0, 1)
        before = sum(len(values) for values in seen.value)
        return rank + world * torch.arange(before, before + n, device=self.device)

    def _eval_epoch_end(self, stage: str) -> None:
        """Log the means of the per-pair scores (gathered from every process); outside fit, keep them per pair in
        the fixed order of the pairs (scores.npz, val_scores.npz: intervals over the pairs)."""
        values = {k.removeprefix(f"{stage}/"): v.reshape(-1) for k, v in self.metrics[stage].compute().items()}
        self.metrics[stage].reset()
        means = {f"{stage}/{key}": v.mean() for key, v in values.items() if key != "pair"}
        self.log_dict(means, prog_bar=stage == "val")
        if stage == "val":  # the validation objective: the mean PSNR of the two sources
            self.log("val/psnr", torch.stack([means[f"val/{source}_psnr"] for source in SOURCES]).mean())
        if not attached(self) or self.trainer.state.fn != "fit":  # not the validations inside fit
            order = values["pair"].argsort()
            kept = ["pair", *(f"{source}_{score}" for source in SOURCES for score in SCORES)]  # not cifar_sub_*
            self.per_pair_scores[stage] = {key: values[key][order].cpu().numpy() for key in kept}

    def on_train_start(self) -> None:
        fit_to_new_budget(self.trainer, self.hparams.lr)

    def configure_optimizers(self):
        # the recipe's lr (and weight decay) given here, so the schedules and searches over model.lr set one number
        decay = {"weight_decay": self.hparams.weight_decay} if self.hparams.weight_decay else {}
        opt = build_partial(self.optimizer_config, "model.optimizer", self.parameters(), lr=self.hparams.lr, **decay)
        interval = "step"
        if self.scheduler_config is not None:  # stepped every optimizer step (interval: step) or every epoch
            config = dict(self.scheduler_config)
            interval = config.pop("interval", "step")
            scheduler = build_partial(config, "model.scheduler", opt)
        elif self.hparams.scheduler is None:
            return opt
        else:
            scheduler = SCHEDULES[self.hparams.scheduler](opt, self.trainer, self.hparams.lr)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}


def check_recipe(lr, loss: str, scheduler: str | None) -> None:
    """The settings a model file may also hold (its types are checked at composition, not in a file)."""
    if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"model.lr={lr!r} must be a positive number (e.g. model.lr=1e-3)")
    if loss not in LOSSES:
        raise ConfigError(f"model.loss={loss!r} is not one of {LOSSES}")
    if scheduler not in SCHEDULERS:
        raise ConfigError(f"model.scheduler={scheduler!r} is not one of null, {', '.join(SCHEDULERS[1:])}")


def build_partial(config: dict, key: str, *args, **kwargs):
    """``model.optimizer`` or ``model.scheduler`` built with ``args``; one line for what it cannot be built from."""
    from hydra.utils import instantiate

    try:
        return instantiate(config, _partial_=True)(*args, **kwargs)
    except Exception as err:
        cause = str(err.__cause__ or err).strip().splitlines()[0]
        raise ConfigError(f"{key} ({config['_target_']}) cannot be built: {cause}") from err


def check_config(node: dict, key: str = "model.scheduler") -> dict:
    """``model.optimizer`` or ``model.scheduler``: a mapping with ``_target_``, built when training starts (never
    when a model file is read: reading a file imports nothing it names)."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=True)
    if not isinstance(node, dict) or not isinstance(node.get("_target_"), str):
        raise ConfigError(f"{key} is a mapping with _target_ (e.g. torch.optim.AdamW), not {node!r}")
    return dict(node)


def check_contract(net: nn.Module) -> None:
    """A separator's contract, on a probe batch (a wrong network stops before training): two finite estimates,
    each (B, 3, 32, 32) (meant to lie in [0, 1]; scores clamp them)."""
    was_training, probe = net.training, torch.linspace(0, 1, 2 * 3 * 32 * 32).reshape(2, 3, 32, 32)
    net.eval()
    try:
        with torch.no_grad():
            out = net(probe)
    except Exception as err:
        raise ConfigError(f"model.net ({type(net).__name__}) fails on a (2, 3, 32, 32) batch: {err}") from err
    finally:
        net.train(was_training)
    out = out if isinstance(out, (tuple, list)) else [out]
    shapes = [tuple(o.shape) if isinstance(o, torch.Tensor) else type(o).__name__ for o in out]
    if shapes != [(2, 3, 32, 32)] * 2:
        raise ConfigError(
            f"model.net ({type(net).__name__}) gives {shapes} for a (2, 3, 32, 32) batch: a separator returns "
            "(gray, colour) estimates, each (B, 3, 32, 32)"
        )
    if not all(torch.isfinite(o).all() for o in out):
        raise ConfigError(f"model.net ({type(net).__name__}) gives values that are not finite for a probe batch")


def build_net(net: dict | nn.Module) -> nn.Module:
    """An ``nn.Module`` as given, or the registered network a config names (never an arbitrary import path)."""
    return net if isinstance(net, nn.Module) else build_network(net)


def _try_compile(net: nn.Module):
    """torch.compile where it works here (one static graph per input shape: a probe or a last short batch must not
    make the training graph a slower dynamic one); the eager module otherwise, with a note why."""
    try:  # a tiny function first, so a missing C compiler shows up here, not mid-run
        torch.compile(lambda x: x * 2 + 1, dynamic=False)(torch.rand(2))
        return torch.compile(net, dynamic=False)
    except Exception as err:  # no C compiler, unsupported platform, ...
        logging.getLogger("mixsep").warning(
            f"torch.compile is not available here ({type(err).__name__}: {err}); running eager."
        )
        return net
