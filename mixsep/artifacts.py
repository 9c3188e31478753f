"""What a run leaves for people to read: metrics.json, samples.png, loss.png (and W&B images)."""

from __future__ import annotations

import json
import logging
import math
import os
import platform
from pathlib import Path

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

log = logging.getLogger("mixsep")
SAMPLE_COLUMNS = ("mix", "true MNIST", "predicted MNIST", "true CIFAR", "predicted CIFAR")


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {cpu}, {os.cpu_count()} cores"


def write_metrics(path: str | Path, metrics: dict) -> None:
    """A flat JSON object; non-finite numbers are written as null so the file stays valid JSON."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
    path = Path(path)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def save_samples(path: str | Path, columns: list[torch.Tensor], titles: tuple[str, ...] = SAMPLE_COLUMNS) -> None:
    """One row per pair, one column per image kind; images (B, 3, H, W) in [0, 1]."""
    rows = len(columns[0])
    fig, axes = plt.subplots(rows, len(columns), figsize=(1.6 * len(columns), 1.6 * rows), squeeze=False)
    for c, (images, title) in enumerate(zip(columns, titles)):
        for r in range(rows):
            ax = axes[r][c]
            ax.imshow(images[r].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_loss_plot(path: str | Path, history: dict[str, list[tuple[int, float]]]) -> None:
    """Loss per epoch (left) and, when recorded, validation PSNR per source in dB (right): the loss of
    the ``psnr`` objective (about -0.65) means nothing to a reader, decibels do."""
    psnr = {name: points for name, points in history.items() if name.endswith("psnr") and points}
    fig, axes = plt.subplots(1, 2 if psnr else 1, figsize=(11 if psnr else 6, 4), squeeze=False)
    panels = [
        (
            axes[0][0],
            {k: v for k, v in history.items() if k in ("train", "val")},
            "loss",
            "training and validation loss",
        )
    ]
    if psnr:
        panels.append((axes[0][1], psnr, "PSNR (dB)", "validation PSNR per source"))
    for ax, series, ylabel, title in panels:
        for name, points in series.items():
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o", markersize=3, label=name.replace("val/", ""))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@torch.no_grad()
def sample_columns(module, batch: tuple[torch.Tensor, ...]) -> tuple[list[torch.Tensor], tuple[str, ...]]:
    """Picture columns and titles; for separators: mix | true MNIST | predicted MNIST | true CIFAR |
    predicted CIFAR (predictions clamped)."""
    batch = tuple(t.to(module.device) for t in batch)
    was_training = module.training
    module.eval()
    outputs = [o.clamp(0, 1) for o in module(batch[0])]
    module.train(was_training)
    if module.outputs == "sources":
        mix, mnist, cifar = batch
        return [mix, mnist, outputs[0], cifar, outputs[1]], SAMPLE_COLUMNS
    if len(batch) == 3:
        return [batch[0], outputs[0]], ("mix", "reconstructed mix")
    return [batch[0], outputs[0], batch[1]], ("input", "output", "target")


def write_config_tree(cfg, path: Path):
    """The composed config as a tree (rich), saved in the run folder; returned for printing once the config
    has proved valid (a config error is then one line, not a screen of config before it)."""
    import rich
    import rich.syntax
    import rich.tree
    from lightning.pytorch.utilities import rank_zero_only
    from omegaconf import OmegaConf

    if rank_zero_only.rank != 0:
        return None
    tree = rich.tree.Tree("config", guide_style="dim")
    for key in cfg:
        if key == "hydra":
            continue
        node = cfg[key]
        text = OmegaConf.to_yaml(node, resolve=True) if OmegaConf.is_config(node) else str(node)
        tree.add(str(key)).add(rich.syntax.Syntax(text, "yaml"))
    with open(path, "w") as f:
        rich.print(tree, file=f)
    return tree


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def write_test_outputs(out: Path, results: dict, module, datamodule, n_samples: int, **extra) -> dict:
    """metrics.json (test scores + what was run, where) and samples.png; prints the scores."""
    metrics = {k: float(v) for k, v in results.items() if k != "test/pairs"}
    scored = int(round(float(results.get("test/pairs", len(datamodule.test_pair_ids)))))
    metrics.update(
        {
            "model": module.hparams.get("name", "separator"),
            "params": count_params(module.net),
            "hardware": hardware(),
            "test_pairs": scored,  # the pairs really scored (fast_dev_run / limit_test_batches score fewer)
            "partial_test": scored < len(datamodule.test_pair_ids),
            "task": datamodule.task,
            "tta": bool(module.hparams.get("tta", False)),  # scored with the 8-transform self-ensemble?
            "sources": datamodule.sources,  # gray+colour source pair; test/mnist_* scores the gray one
            **extra,
        }
    )
    write_metrics(out / "metrics.json", metrics)
    save_samples(out / "samples.png", *sample_columns(module, datamodule.fixed_batch("test", n_samples, spread=True)))
    log.info(f"wrote {out / 'metrics.json'} and {out / 'samples.png'}")
    if metrics["partial_test"]:
        log.warning(
            f"partial test: {scored} of {len(datamodule.test_pair_ids)} test pairs scored "
            "(fast_dev_run / limit_test_batches); mixsep.report does not rank it"
        )
    for key in sorted(k for k in metrics if k.startswith(("test/", "oracle/"))):
        log.info(f"  {key:22s} {metrics[key]:.4f}")
    return metrics


class SamplesAndCurves(L.Callback):
    """Records train/val loss per epoch (whatever the logger) and logs sample separations to W&B and
    TensorBoard."""

    def __init__(self, n_samples: int = 8) -> None:
        self.n_samples = n_samples
        self.history: dict[str, list[tuple[int, float]]] = {"train": [], "val": []}

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get("train/loss_epoch")
        if value is not None:
            self.history["train"].append((trainer.current_epoch + 1, float(value)))

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        # after the epoch's metrics are collected (at on_validation_epoch_end they are the previous epoch's)
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        value = trainer.callback_metrics.get("val/loss")
        if value is not None:
            self.history["val"].append((trainer.current_epoch + 1, float(value)))
        for key in ("val/mnist_psnr", "val/cifar_psnr"):
            if key in trainer.callback_metrics:
                self.history.setdefault(key, []).append(
                    (trainer.current_epoch + 1, float(trainer.callback_metrics[key]))
                )
        self._log_images(trainer, module)

    def _log_images(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """The fixed validation samples (one row per image kind: mix, true and predicted of each source; one
        column per pair) to W&B and TensorBoard, as 8-bit RGB pictures each validation epoch."""
        from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

        loggers = [lg for lg in trainer.loggers if isinstance(lg, (WandbLogger, TensorBoardLogger))]
        dm = trainer.datamodule
        if not loggers or dm is None or not trainer.is_global_zero:
            return
        cols, titles = sample_columns(module, dm.fixed_batch("val", self.n_samples, spread=True))
        grid = make_grid(torch.cat([c.float().cpu() for c in cols]), nrow=len(cols[0]), padding=1)
        # 8-bit pixels: W&B's own float conversion turns a [0, 1] float image black
        pixels = grid.clamp(0, 1).mul(255).round().to(torch.uint8)
        caption = "rows: " + " / ".join(titles)
        for lg in loggers:
            if isinstance(lg, WandbLogger):
                lg.log_image("samples", [pixels.permute(1, 2, 0).numpy()], step=trainer.global_step, caption=[caption])
            else:
                lg.experiment.add_image("samples", pixels, global_step=trainer.global_step, dataformats="CHW")

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = state_dict.get("history", self.history)
