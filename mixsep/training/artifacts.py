"""loss.png: a run's loss and validation PSNR per epoch, drawn with matplotlib."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mixsep.models.metrics import SOURCES

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
    """Loss per epoch (left, named after ``model.loss``) and, when recorded, validation PSNR per source in dB (right):
    the loss of the ``psnr`` objective (about -0.65) means nothing to a reader, decibels do."""
    loss_name = LOSS_NAMES.get(loss, loss)
    losses = {k: v for k, v in history.items() if k in ("train", "val")}
    panels = [(losses, loss_name, f"training and validation loss: {loss_name}")]
    if psnr := psnr_curves(history):
        panels.append((psnr, "PSNR (dB)", "validation PSNR per source"))
    fig = Figure(figsize=(11 if psnr else 6, 4))  # drawn without pyplot: no backend, nothing left open
    for ax, (series, ylabel, title) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        for name, points in series.items():
            if points:
                ax.plot(*zip(*points), marker="o", markersize=3, label=name.replace("val/", ""))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="epoch", ylabel=ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
