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
from mixsep.sources import DEFAULT_SOURCES, parse_pair
from mixsep.sweep_report import is_sweep, report_sweep

SCORE_KEYS = ("test/mnist_psnr", "test/mnist_ssim", "test/cifar_psnr", "test/cifar_ssim")

# Published figures of the earlier reports (../shared/reference), the preset that reruns each system,
# and why the published number cannot be compared with a mixsep score.
REPORTED_ELSEWHERE = [
    {
        "system": "conv dual-decoder (report 000)",
        "preset": "prior/conv_dual",
        "reported": {
            "test/mnist_ssim": 0.8998,
            "test/mnist_psnr": 22.54,
            "test/cifar_ssim": 0.3735,
            "test/cifar_psnr": 17.01,
            "test/loss": 0.0284,
        },
        "why": "comparable definitions, but measured on the report's own random test pairs",
    },
    {
        "system": "mean-image autoencoder + subtraction (report 001)",
        "preset": "prior/mean_ae_subtract",
        "reported": {
            "oracle/mnist_psnr": 44.55,
            "oracle/cifar_psnr": 44.55,
            "oracle/mnist_ssim": 0.995,
            "oracle/cifar_ssim": 0.999,
        },
        "why": "ORACLE: 'separates' with 2·recon − (ground truth of the other image), i.e. uses the answer; "
        "not a separation score",
    },
    {
        "system": "ResNet18 dual-decoder + subtraction (report 002)",
        "preset": "prior/resnet_dual",
        "reported": {"test/mnist_psnr": 62.79, "test/cifar_psnr": 65.22},
        "why": "PSNR with data range 255 on [0, 1] images adds 20·log10(255) = +48.13 dB",
    },
    {
        "system": "mean-image autoencoder, normalised (report 003)",
        "preset": "prior/mean_ae_norm",
        "reported": {"test/mix_ssim": 0.2322, "test/mix_psnr": 15.62},
        "why": "reconstructs the mean image: separates nothing",
    },
    {
        "system": "CIFAR-10 autoencoder (report 004)",
        "preset": "prior/cifar_ae",
        "reported": {},
        "why": "CIFAR-10 reconstruction, another task; the report gives no number",
    },
    {
        "system": "CIFAR-10 denoiser (report 004)",
        "preset": "prior/cifar_denoise",
        "reported": {"test/psnr": 26.78, "test/ssim": 0.92},
        "why": "CIFAR-10 denoising, another task; same metric definitions",
    },
]
DATA_RANGE_255_DB = 48.13


def find_runs(dirs: list[str | Path], ranked_only: bool = True, include_debug: bool = False) -> list[dict]:
    """Runs under the folders; ``ranked_only``: separators with all four test scores on the whole test
    set (never a partial test); debug runs (``debug=...``) only with ``include_debug``."""
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
            if m.get("debug_mode") and not include_debug:
                continue
            if not ranked_only or rankable(m):
                runs.append({**m, "path": str(f.parent)})
    return runs


def rankable(m: dict) -> bool:
    return all(isinstance(m.get(k), (int, float)) for k in SCORE_KEYS) and not m.get("partial_test")


def rank_key(row: dict) -> float:
    return -(row["test/mnist_psnr"] + row["test/cifar_psnr"]) / 2


def run_sources(row: dict) -> str:
    return row.get("sources") or DEFAULT_SOURCES


@torch.no_grad()
def baseline_rows(
    data_root: str | None = None, cache_dir: str | None = None, test_pairs: int = 10000, sources: str = DEFAULT_SOURCES
) -> list[dict]:
    """Trivial separations on the fixed test pairs of a source pair, scored exactly like the models."""
    from mixsep.data import MixDataModule

    gray, color = parse_pair(sources)
    dm = MixDataModule(
        root=data_root, cache_dir=cache_dir, test_pairs=test_pairs, val_holdout=1, gray=gray, color=color
    )
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
        row = {
            "model": name,
            "experiment": "baseline",
            "params": 0,
            "train_seconds": 0,
            "hardware": "-",
            "test_pairs": len(dm.test_pair_ids),
            "path": "-",
            "sources": sources,
        }
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
        "| # | model | experiment | sources | params | training time | hardware | test pairs "
        "| MNIST PSNR | MNIST SSIM | CIFAR PSNR | CIFAR SSIM |",
        "|---|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(rows, 1):
        lines.append(
            f"| {i} | {r.get('model', '?')} | {r.get('experiment', '-')} | {run_sources(r)} | {r.get('params', 0):,} "
            f"| {_minutes(r.get('train_seconds'))} | {r.get('hardware', '-')} | {r.get('test_pairs', '-')} "
            f"| {_fmt(r['test/mnist_psnr'])} | {_fmt(r['test/mnist_ssim'], 4)} "
            f"| {_fmt(r['test/cifar_psnr'])} | {_fmt(r['test/cifar_ssim'], 4)} |"
        )
    return "\n".join(lines)


def reported_block() -> str:
    lines = [
        "As reported elsewhere (not ranked: not measured by mixsep on the fixed test pairs, and each has a "
        "reason it cannot be compared):",
        "",
        "| system | reported | why not comparable |",
        "|---|---|---|",
    ]
    for r in REPORTED_ELSEWHERE:
        reported = ", ".join(f"{k} {v}" for k, v in r["reported"].items()) or "-"
        lines.append(f"| {r['system']} | {reported} | {r['why']} |")
    return "\n".join(lines)


def prior_table(runs: list[dict]) -> str:
    """Each earlier system: reported vs mixsep with the same settings, with the difference."""
    lines = [
        "| preset | mixsep run | score | reported | mixsep, same settings | difference | note |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for r in REPORTED_ELSEWHERE:
        mine = [run for run in runs if run.get("experiment") == r["preset"]]
        run = mine[-1] if mine else {}
        keys = list(r["reported"]) or sorted(k for k in run if k.startswith("test/") and k != "test/loss")
        budget = f"{run.get('global_step', '?')} steps, {_minutes(run.get('train_seconds'))}" if run else "not run"
        for key in keys:
            reported, measured = r["reported"].get(key), run.get(key)
            comparable = reported
            note = r["why"]
            if key.startswith("oracle/"):
                note = "uses ground truth (oracle), never a separation score"
            elif r["preset"] == "prior/resnet_dual" and reported is not None:
                comparable = reported - DATA_RANGE_255_DB
                note = f"reported at data range 255; {comparable:.2f} dB at range 1, the difference is against that"
            diff = measured - comparable if isinstance(measured, (int, float)) and comparable is not None else None
            label = f"{key} (ORACLE)" if key.startswith("oracle/") else key
            lines.append(
                f"| {r['preset']} | {budget} | {label} | {_fmt(reported, 4)} | {_fmt(measured, 4)} "
                f"| {_fmt(diff, 4) if diff is None or diff < 0 else '+' + _fmt(diff, 4)} | {note} |"
            )
        if run and r["preset"] == "prior/resnet_dual":
            for key in ("test/cifar_sub_psnr", "test/cifar_sub_ssim"):
                lines.append(
                    f"| {r['preset']} | {budget} | {key} | - | {_fmt(run.get(key), 4)} | - | "
                    "post-hoc CIFAR := clamp(2·mix − predicted MNIST) |"
                )
    return "\n".join(lines)


def bar_chart(path: str | Path, runs: list[dict], baselines: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(runs + baselines, key=rank_key)
    labels = [
        f"{r.get('model')}\n{r.get('experiment', '')}"
        if r.get("experiment") != "baseline"
        else r["model"].replace("baseline: ", "baseline\n")
        for r in rows
    ]
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
    parser.add_argument(
        "--include-debug", action="store_true", help="also list debug runs (debug=...); a partial test is never ranked"
    )
    parser.add_argument(
        "--test-pairs",
        type=int,
        default=10000,
        help="test pairs of the baselines when no run says how many it was scored on",
    )
    args = parser.parse_args(argv)

    all_runs = find_runs(args.dirs, ranked_only=False, include_debug=args.include_debug)
    runs = [r for r in all_runs if rankable(r)]
    if not all_runs:
        parser.error(f"no metrics.json under {' '.join(args.dirs)}")
    sweeps = [Path(d) for d in args.dirs if is_sweep(Path(d))]
    # rows scored on different numbers of test pairs are never ranked together; baselines for each count
    # runs on different source pairs or numbers of test pairs are never ranked together; each table
    # has its own baselines, scored on its pairs
    count_of = lambda r: int(r.get("test_pairs") or args.test_pairs)  # noqa: E731
    groups = sorted({(run_sources(r), count_of(r)) for r in runs}) or [(DEFAULT_SOURCES, args.test_pairs)]
    tables, baselines = [], []
    for sources, count in groups:
        rows = [r for r in runs if (run_sources(r), count_of(r)) == (sources, count)]
        base = baseline_rows(args.data_root, args.cache_dir, count, sources)
        baselines += base
        heading = f"Scored on {count:,} test pairs of {sources}:\n\n" if len(groups) > 1 else ""
        tables.append(heading + leaderboard(rows, base))
    text = "\n\n".join([*(report_sweep(s) for s in sweeps), *tables, reported_block()])
    if any(str(r.get("experiment", "")).startswith("prior/") for r in all_runs):
        text += "\n\nEarlier systems rerun by mixsep (`experiment=prior/...`):\n\n" + prior_table(all_runs)
    print(text)
    main = max(groups, key=lambda g: sum((run_sources(r), count_of(r)) == g for r in runs))
    bar_chart(
        args.chart,
        [r for r in runs if (run_sources(r), count_of(r)) == main],
        [b for b in baselines if (b["sources"], b["test_pairs"]) == main],
    )
    print(f"\n(chart: {args.chart})")
    return text


if __name__ == "__main__":
    main()
