"""What a run leaves for people to read: metrics.json, samples.png, loss.png (and W&B images)."""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

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
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in history.items():
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", markersize=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("training and validation loss")
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


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def write_test_outputs(out: Path, results: dict, module, datamodule, n_samples: int, **extra) -> dict:
    """metrics.json (test scores + what was run, where) and samples.png; prints the scores."""
    metrics = {k: float(v) for k, v in results.items()}
    metrics.update({
        "model": module.hparams.get("name", "separator"),
        "params": count_params(module.net),
        "hardware": hardware(),
        "test_pairs": len(datamodule.test_pair_ids),
        "task": datamodule.task,
        **extra,
    })
    write_metrics(out / "metrics.json", metrics)
    save_samples(out / "samples.png", *sample_columns(module, datamodule.fixed_batch("test", n_samples, spread=True)))
    print(f"mixsep: wrote {out / 'metrics.json'} and {out / 'samples.png'}")
    for key in sorted(k for k in metrics if k.startswith(("test/", "oracle/"))):
        print(f"  {key:22s} {metrics[key]:.4f}")
    return metrics


class SamplesAndCurves(L.Callback):
    """Records train/val loss per epoch (whatever the logger) and logs sample separations to W&B."""

    def __init__(self, n_samples: int = 8) -> None:
        self.n_samples = n_samples
        self.history: dict[str, list[tuple[int, float]]] = {"train": [], "val": []}

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get("train/loss_epoch")
        if value is not None:
            self.history["train"].append((trainer.current_epoch + 1, float(value)))

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get("val/loss")
        if value is not None:
            self.history["val"].append((trainer.current_epoch + 1, float(value)))
        self._log_wandb_images(trainer, module)

    def _log_wandb_images(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        from lightning.pytorch.loggers import WandbLogger

        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        dm = trainer.datamodule
        if not loggers or dm is None:
            return
        cols, titles = sample_columns(module, dm.fixed_batch("val", self.n_samples, spread=True))
        grid = torch.cat([torch.cat(list(c), dim=2) for c in cols], dim=1)  # rows: kinds, cols: pairs
        loggers[0].log_image("samples", [grid.float().cpu()], caption=[" / ".join(titles)])

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = state_dict.get("history", self.history)
