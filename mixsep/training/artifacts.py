"""What a run leaves for people to read: metrics.json, samples.png, loss.png (and W&B images)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from mixsep.files import write_text_atomically  # noqa: E402
from mixsep.models.metrics import SOURCES  # noqa: E402
from mixsep.report.stats import SCORES_FILE, VAL_SCORES_FILE, write_scores  # noqa: E402
from mixsep.sheet import save_samples  # noqa: E402, F401  (samples.png; mixsep.separate's sheet)
from mixsep.training.hardware import describe_machine  # noqa: E402

log = logging.getLogger("mixsep")


def write_metrics(path: str | Path, metrics: dict) -> None:
    """A flat JSON object; non-finite numbers are written as null so the file stays valid JSON."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
    write_text_atomically(path, json.dumps(clean, indent=2, sort_keys=True) + "\n")


LOSS_NAMES = {
    "mse": "MSE",
    "l1": "L1",
    "psnr": "PSNR loss: mean log10(MSE) / 10 = −dB / 100",
    "mse+ssim": "MSE + w·(1 − SSIM)",
    "psnr+ssim": "log10(MSE) / 10 + w·(1 − SSIM)",
}


def psnr_curves(history: dict[str, list[tuple[int, float]]]) -> dict[str, list[tuple[int, float]]]:
    """The validation PSNR curves to draw; two equal ones (the U-Net's, by construction) as one, labelled so."""
    wanted = {f"val/{source}_psnr" for source in SOURCES}
    psnr = {name: points for name, points in history.items() if name in wanted and points}
    if len(psnr) == 2:
        (_, pa), (_, pb) = psnr.items()
        if len(pa) == len(pb) and all(abs(ya - yb) < 1e-3 for (_, ya), (_, yb) in zip(pa, pb)):
            return {"MNIST and CIFAR (equal: CIFAR = 2·mix − MNIST)": pa}
    return psnr


def save_loss_plot(path: str | Path, history: dict[str, list[tuple[int, float]]], loss: str = "mse") -> None:
    """Loss per epoch (left, named after ``model.loss``) and, when recorded, validation PSNR per source in
    dB (right): the loss of the ``psnr`` objective (about -0.65) means nothing to a reader, decibels do.
    Curves that are equal (the U-Net's two PSNRs, by construction) are drawn once, labelled so."""
    from matplotlib.ticker import MaxNLocator

    psnr = psnr_curves(history)
    fig, axes = plt.subplots(1, 2 if psnr else 1, figsize=(11 if psnr else 6, 4), squeeze=False)
    loss_name = LOSS_NAMES.get(loss, loss)
    losses = {k: v for k, v in history.items() if k in ("train", "val")}
    panels = [(axes[0][0], losses, loss_name, f"training and validation loss: {loss_name}")]
    if psnr:
        panels.append((axes[0][1], psnr, "PSNR (dB)", "validation PSNR per source"))
    for ax, series, ylabel, title in panels:
        for name, points in series.items():
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o", markersize=3, label=name.replace("val/", ""))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def picture_columns(module, batch: tuple[torch.Tensor, ...]) -> tuple[list[torch.Tensor], tuple[str, ...]]:
    """The module's own picture columns of a fixed batch, drawn in eval mode (the mode it was in is kept)."""
    batch = tuple(t.to(module.device) for t in batch)
    was_training = module.training
    module.eval()
    try:
        return module.picture_columns(batch)
    finally:
        module.train(was_training)


def write_test_outputs(out: Path, results: dict, module, datamodule, n_samples: int, **extra) -> dict:
    """metrics.json (test scores + what was run, where) and samples.png; prints the scores."""
    metrics = {k: float(v) for k, v in results.items() if k != "test/pairs"}
    scored = int(round(float(results.get("test/pairs", len(datamodule.test_pair_ids)))))
    metrics.update(
        {
            "model": module.hparams.get("name", "separator"),
            "params": sum(p.numel() for p in module.net.parameters()),
            "hardware": describe_machine(),
            "test_pairs": scored,  # the pairs really scored (fast_dev_run / limit_test_batches score fewer)
            "partial_test": scored < len(datamodule.test_pair_ids),
            "task": datamodule.task,
            "tta": bool(module.hparams.get("tta", False)),  # scored with the 8-transform self-ensemble?
            "tta_color": bool(module.hparams.get("tta_color", False)),  # ... with the 6 RGB orders'?
            "sources": datamodule.sources,  # gray+colour source pair; test/mnist_* scores the gray one
            **extra,
        }
    )
    write_metrics(out / "metrics.json", metrics)
    for stage, name in (("test", SCORES_FILE), ("val", VAL_SCORES_FILE)):
        scores = getattr(module, "per_pair_scores", {}).get(stage)
        if scores:  # one row per pair (every process's), in the fixed order of the pairs: for paired intervals
            write_scores(out / name, scores)
    save_samples(out / "samples.png", *picture_columns(module, datamodule.fixed_batch("test", n_samples, spread=True)))
    log.info(f"wrote {out / 'metrics.json'} and {out / 'samples.png'}")
    if metrics["partial_test"]:
        log.warning(
            f"partial test: {scored} of {len(datamodule.test_pair_ids)} test pairs scored "
            "(fast_dev_run / limit_test_batches); mixsep.report does not rank it"
        )
    for key in sorted(k for k in metrics if k.startswith(("test/", "oracle/"))):
        log.info(f"  {key:22s} {metrics[key]:.4f}")
    return metrics
