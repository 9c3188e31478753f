"""``python -m mixsep.report DIR [DIR ...]``: a Markdown leaderboard of every metrics.json found.

Rows are ranked by the mean of the two PSNRs. The trivial baselines are computed on the same fixed
test pairs and always shown. Numbers published elsewhere are listed apart, never ranked, each with
the reason it cannot be compared.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from mixsep.module import image_metrics

SCORE_KEYS = ("test/mnist_psnr", "test/mnist_ssim", "test/cifar_psnr", "test/cifar_ssim")

# Published figures of the earlier reports (../shared/reference), with why they are not comparable.
REPORTED_ELSEWHERE = [
    {"system": "conv_dual (report 000)", "preset": "prior/conv_dual", "test/mnist_psnr": 22.54,
     "test/mnist_ssim": 0.8998, "test/cifar_psnr": 17.01, "test/cifar_ssim": 0.3735,
     "why": "own random test pairs (not the fixed 10,000); otherwise the same definitions"},
    {"system": "mean_ae + subtraction (report 001)", "preset": "prior/mean_ae_subtract", "test/mnist_psnr": 44.55,
     "test/mnist_ssim": 0.995, "test/cifar_psnr": 44.55, "test/cifar_ssim": 0.999,
     "why": "oracle: 'separates' by subtracting the ground truth of the other image; not a separation score"},
    {"system": "resnet_dual (report 002)", "preset": "prior/resnet_dual", "test/mnist_psnr": 62.79,
     "test/mnist_ssim": None, "test/cifar_psnr": 65.22, "test/cifar_ssim": None,
     "why": "PSNR with data range 255 on [0, 1] images: +48.13 dB too high (about 14.7 / 17.1 dB at range 1)"},
    {"system": "mean_ae_norm (report 003)", "preset": "prior/mean_ae_norm", "test/mix_psnr": 15.62,
     "test/mix_ssim": 0.2322, "why": "reconstructs the mean image, separates nothing"},
    {"system": "cifar_denoise (report 004)", "preset": "prior/cifar_denoise", "test/psnr": 26.78,
     "test/ssim": 0.92, "why": "CIFAR-10 denoising, a different task"},
]


def find_runs(dirs: list[str | Path]) -> list[dict]:
    runs = []
    for d in dirs:
        d = Path(d)
        files = [d] if d.is_file() else sorted(d.rglob("metrics.json"))
        for f in files:
            try:
                m = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError) as err:
                print(f"mixsep.report: skipping {f}: {err}")
                continue
            if all(isinstance(m.get(k), (int, float)) for k in SCORE_KEYS):
                runs.append({**m, "path": str(f.parent)})
    return runs


def rank_key(row: dict) -> float:
    return -(row["test/mnist_psnr"] + row["test/cifar_psnr"]) / 2


@torch.no_grad()
def baseline_rows(data_root: str | None = None, cache_dir: str | None = None, test_pairs: int = 10000) -> list[dict]:
    """Trivial separations on the fixed test pairs, scored exactly like the models."""
    from mixsep.data import MixDataModule

    dm = MixDataModule(root=data_root, cache_dir=cache_dir, test_pairs=test_pairs, val_holdout=1)
    dm.setup("test")
    rules = {
        "baseline: MNIST := 0, CIFAR := clamp(2·mix)": lambda mix: (torch.zeros_like(mix), (2 * mix).clamp(0, 1)),
        "baseline: both := mix": lambda mix: (mix, mix),
    }
    rows = []
    for name, rule in rules.items():
        metrics = {s: image_metrics() for s in ("mnist", "cifar")}
        for batch in dm.test_dataloader():
            mix, mnist, cifar = dm.make_batch(*batch)
            mnist_hat, cifar_hat = rule(mix)
            metrics["mnist"].update(mnist_hat, mnist)
            metrics["cifar"].update(cifar_hat, cifar)
        row = {"model": name, "experiment": "baseline", "params": 0, "train_seconds": 0, "hardware": "-",
               "test_pairs": len(dm.test_pair_ids), "path": "-"}
        for s, coll in metrics.items():
            for k, v in coll.compute().items():
                row[f"test/{s}_{k}"] = float(v)
        rows.append(row)
    return rows


def _fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _minutes(seconds) -> str:
    return "-" if not seconds else f"{seconds / 60:.1f} min"


def leaderboard(runs: list[dict], baselines: list[dict]) -> str:
    rows = sorted(runs + baselines, key=rank_key)
    lines = [
        "| # | model | experiment | params | training time | hardware | test pairs "
        "| MNIST PSNR | MNIST SSIM | CIFAR PSNR | CIFAR SSIM |",
        "|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(rows, 1):
        lines.append(
            f"| {i} | {r.get('model', '?')} | {r.get('experiment', '-')} | {r.get('params', 0):,} "
            f"| {_minutes(r.get('train_seconds'))} | {r.get('hardware', '-')} | {r.get('test_pairs', '-')} "
            f"| {_fmt(r['test/mnist_psnr'])} | {_fmt(r['test/mnist_ssim'], 4)} "
            f"| {_fmt(r['test/cifar_psnr'])} | {_fmt(r['test/cifar_ssim'], 4)} |")
    return "\n".join(lines)


def reported_block() -> str:
    lines = [
        "As reported elsewhere (not ranked: the numbers below were not measured by mixsep on the fixed "
        "test pairs, and each has a reason it cannot be compared):", "",
        "| system | MNIST PSNR | MNIST SSIM | CIFAR PSNR | CIFAR SSIM | other | why not comparable |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for r in REPORTED_ELSEWHERE:
        other = ", ".join(f"{k} {v}" for k, v in r.items() if k.startswith("test/") and k not in SCORE_KEYS)
        lines.append(f"| {r['system']} | {_fmt(r.get('test/mnist_psnr'))} | {_fmt(r.get('test/mnist_ssim'), 4)} "
                     f"| {_fmt(r.get('test/cifar_psnr'))} | {_fmt(r.get('test/cifar_ssim'), 4)} "
                     f"| {other or '-'} | {r['why']} |")
    return "\n".join(lines)


def bar_chart(path: str | Path, runs: list[dict], baselines: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(runs + baselines, key=rank_key)
    labels = [f"{r.get('model')}\n{r.get('experiment', '')}" if r.get("experiment") != "baseline"
              else r["model"].replace("baseline: ", "baseline\n") for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.3 * len(rows)), 4.5))
    for ax, metric, ylabel in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ssim", "SSIM")):
        x = torch.arange(len(rows)).float()
        ax.bar(x - 0.2, [r[f"test/mnist_{metric}"] for r in rows], width=0.4, label="MNIST")
        ax.bar(x + 0.2, [r[f"test/cifar_{metric}"] for r in rows], width=0.4, label="CIFAR-10")
        ax.set_xticks(x.tolist(), labels, fontsize=7, rotation=30, ha="right")
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("mixsep leaderboard (fixed test pairs, data range 1)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m mixsep.report", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help="run folders, multirun folders or metrics.json files")
    parser.add_argument("--chart", default="leaderboard.png", help="bar chart PNG to write")
    parser.add_argument("--data-root", default=None, help="data for the baselines (default: MIXSEP_DATA_ROOT)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--test-pairs", type=int, default=10000)
    args = parser.parse_args(argv)

    runs = find_runs(args.dirs)
    if not runs:
        parser.error(f"no metrics.json with test scores under {' '.join(args.dirs)}")
    baselines = baseline_rows(args.data_root, args.cache_dir, args.test_pairs)
    text = leaderboard(runs, baselines) + "\n\n" + reported_block()
    print(text)
    bar_chart(args.chart, runs, baselines)
    print(f"\n(chart: {args.chart})")
    return text


if __name__ == "__main__":
    main()
