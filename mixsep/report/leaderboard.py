"""``python -m mixsep.report DIR [DIR ...]``: a Markdown leaderboard of every metrics.json found.

Rows are ranked by the mean of the two PSNRs. The trivial baselines are computed on the same fixed
test pairs and always shown. Numbers published elsewhere are listed apart, never ranked, each with
the reason it cannot be compared.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import torch

from mixsep.data.sources import DEFAULT_SOURCES, parse_pair
from mixsep.errors import ArgumentParser, ConfigError, MixsepError, one_line_errors, positive_int, user_error
from mixsep.extensions import load_extensions
from mixsep.files import write_atomically, write_text_atomically
from mixsep.models.metrics import RANK_SCORE, SOURCES, decimals, image_metrics, score_of
from mixsep.record.provenance import short_commit
from mixsep.record.status import STATUS_KINDS, BadRecord, effective_status, load_record
from mixsep.report.published import prior_table, reported_block
from mixsep.report.stats import (
    SCORES_FILE,
    VAL_SCORES_FILE,
    bootstrap_mean,
    pair_psnr,
    paired_difference,
    read_scores,
    unpaired_difference,
)
from mixsep.report.sweep import is_sweep, report_sweep
from mixsep.report.tables import METRICS_KINDS, failed, interval, minutes, score_cell, score_columns


def read_runs(dirs: list[str | Path], include_debug: bool = False) -> tuple[list[dict], list[str]]:
    """Every metrics.json under the folders (debug runs, ``debug=...``, only with ``include_debug``), and a line
    per one left out: a record not of the kinds mixsep writes (its file and field named)."""
    runs, left_out = [], []
    for d in dirs:
        d = Path(d)
        for f in [d] if d.is_file() else sorted(d.rglob("metrics.json")):
            try:
                m = load_record(f, METRICS_KINDS)
            except BadRecord as err:
                left_out.append(f"- {err}")
                continue
            if include_debug or not m.get("debug_mode"):
                runs.append({**m, "path": str(f.parent)})
    return runs, left_out


def find_runs(dirs: list[str | Path], ranked_only: bool = True, include_debug: bool = False) -> list[dict]:
    """Runs under the folders; ``ranked_only``: separators with all four test scores on the whole test
    set (never a partial test); debug runs (``debug=...``) only with ``include_debug``."""
    runs, _ = read_runs(dirs, include_debug)
    return [m for m in runs if not ranked_only or rankable(m)]


def unscored_runs(dirs: list[str | Path]) -> tuple[list[str], list[str]]:
    """One line per run folder under ``dirs`` that has a status.json but no final scores (running, lost,
    failed, re-queued, cancelled, refused): what the leaderboard cannot rank, said instead of left out; and a line
    per status.json left out (not of the kinds mixsep writes; a bad metrics.json is read_runs' to say)."""
    lines, left_out = [], []
    for d in dirs:
        d = Path(d)
        for status_file in sorted(d.rglob("status.json")) if d.is_dir() else []:
            folder = status_file.parent
            try:
                record = load_record(status_file, STATUS_KINDS)
            except BadRecord as err:
                left_out.append(f"- {err}")
                continue
            try:
                metrics = load_record(folder / "metrics.json", METRICS_KINDS)
            except BadRecord:
                continue  # read_runs says why it is left out
            if rankable(metrics) or metrics.get("debug_mode"):
                continue
            lines.append(f"- {folder}: {unscored_detail(record)}")
    return lines, left_out


def unscored_detail(record: dict) -> str:
    state = effective_status(record)
    if state == "completed":
        return "completed without whole-test-set scores (a partial test or a one-image system)"
    return {
        "lost": f"lost at step {record.get('step', '?')} (last heartbeat {record.get('heartbeat', '?')} on "
        f"{record.get('host', '?')}, pid {record.get('pid', '?')}): run it again in its folder to resume",
        "running": f"running (step {record.get('step', '?')}, heartbeat {record.get('heartbeat', '?')})",
        "failed": f"failed: {str(record.get('error') or '')[:100]}",
        "pruned": f"pruned by the search's pruner at epoch {record.get('epoch', '?')}, step "
        f"{record.get('step', '?')} ({record.get('optimized_metric', 'objective')} {record.get('value', '?')})",
    }.get(state, state)


RANK_KEYS = tuple(f"test/{source}_{RANK_SCORE}" for source in SOURCES)


def rankable(m: dict) -> bool:
    """A whole-test-set result with the scores runs are ranked by (not NaN); its other scores may be more or fewer."""
    scored = all(isinstance(m.get(k), (int, float)) and not math.isnan(m[k]) for k in RANK_KEYS)
    return scored and not m.get("partial_test")


def why_not_ranked(m: dict) -> str:
    if m.get("partial_test"):
        return "a partial test"
    without = [k for k in RANK_KEYS if failed(m, k)]
    if without:
        return f"{' and '.join(without)} failed (not a finite number)"
    return f"no {' and '.join(RANK_KEYS)}"


def rank_key(row: dict) -> float:
    return -sum(row[key] for key in RANK_KEYS) / len(RANK_KEYS)


def run_sources(row: dict) -> str:
    return row.get("sources") or DEFAULT_SOURCES


def sources_cell(row: dict) -> str:
    """The sources a row was scored on, and those its model was trained on where an evaluation scored it on
    others."""
    trained_on = row.get("trained_on")
    if trained_on and trained_on != run_sources(row):
        return f"{run_sources(row)} (trained on {trained_on})"
    return run_sources(row)


@torch.no_grad()
def baseline_rows(
    data_root: str | None = None, cache_dir: str | None = None, test_pairs: int = 10000, sources: str = DEFAULT_SOURCES
) -> list[dict]:
    """Trivial separations on the fixed test pairs of a source pair, scored exactly like the models."""
    from mixsep.data.datamodule import MixDataModule

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
            gray_hat, color_hat = rule(mix)
            metrics["mnist"].update(gray_hat, mnist)
            metrics["cifar"].update(color_hat, cifar)
        scores = {f"test/{s}_{k}": float(v) for s, coll in metrics.items() for k, v in coll.compute().items()}
        row = {"model": name, "experiment": "baseline", "params": 0, "train_seconds": 0, "hardware": "-", "path": "-"}
        rows.append({**row, "test_pairs": len(dm.test_pair_ids), "sources": sources, **scores})
    return rows


def run_name(row: dict) -> str:
    """The run folder, relative to the current folder where it lies below it ("-" for a baseline)."""
    path = row.get("path", "-")
    if path == "-":
        return path
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def interval_cells(rows: list[dict]) -> dict[int, tuple[str, str]]:
    """Per row with per-pair scores (scores.npz): the 95 % bootstrap interval of its mean PSNR (both sources)
    over the test pairs, and its paired difference from the best such row, with its interval."""
    scored = {i: scores_or_none(r["path"]) for i, r in enumerate(rows) if r.get("path", "-") != "-"}
    scored = {i: pair_psnr(s) for i, s in scored.items() if s is not None}
    if not scored:
        return {}
    best = min(scored, key=lambda i: rank_key(rows[i]))
    cells = {}
    for i, values in scored.items():
        ci = interval(*bootstrap_mean(values, n_boot=1000))
        if i == best:
            delta = "best"
        elif len(values) == len(scored[best]):
            delta = interval(*paired_difference(values, scored[best], n_boot=1000), sign="+")
        else:
            delta = "-"
        cells[i] = (ci, delta)
    return cells


SCORE_ARRAYS = ("pair", "mnist_psnr", "cifar_psnr")  # what a comparison and an interval need of scores.npz


def scores_problem(scores: dict[str, np.ndarray]) -> str | None:
    """What in per-pair scores is not what a mixsep run writes (one number per pair in each array); None if all is."""
    missing = [key for key in SCORE_ARRAYS if key not in scores]
    if missing:
        return f"it has no {' or '.join(missing)}"
    pairs = len(scores["pair"]) if scores["pair"].ndim == 1 else -1
    for key, values in scores.items():
        if values.ndim != 1 or values.dtype.kind not in "iuf" or len(values) != pairs:
            return f"its {key[:40]} ({values.dtype}, shape {values.shape[:4]}) is not one number per pair"
    return None


def checked_scores(run: str | Path, name: str = SCORES_FILE) -> dict[str, np.ndarray] | None:
    """A run's per-pair scores (None where it has none), refused in one line where they are not of the kinds
    mixsep writes."""
    scores = read_scores(run, name)
    problem = scores_problem(scores) if scores is not None else None
    if problem:
        raise ConfigError(
            f"{Path(run) / name}: {problem}: not scores a mixsep run wrote; remove it or score the model again "
            "(python -m mixsep.evaluate)"
        )
    return scores


def scores_or_none(run: str | Path) -> dict[str, np.ndarray] | None:
    """A row's per-pair scores for its interval; a file that cannot give one leaves the row without (said)."""
    try:
        return checked_scores(run)
    except MixsepError as err:
        print(f"mixsep.report: no interval for {run}: {err}", file=sys.stderr)
        return None


def leaderboard(rows: list[dict]) -> str:
    """The Markdown table of runs (and baselines) ranked together, best first."""
    rows = sorted(rows, key=rank_key)
    intervals = interval_cells(rows)
    columns = score_columns(rows)
    lines = [
        "| # | run | model | experiment | sources | params | training time | hardware | commit | test pairs "
        + "".join(f"| {heading} " for _, heading in columns)
        + "| PSNR, 95 % CI | Δ vs best, 95 % CI |",
        "|---|---|---|---|---|---:|---:|---|---|---:|" + "---:|" * len(columns) + "---:|---:|",
    ]
    for i, r in enumerate(rows, 1):
        ci, delta = intervals.get(i - 1, ("-", "-"))
        lines.append(
            f"| {i} | {run_name(r)} | {r.get('model', '?')} | {r.get('experiment', '-')} | {sources_cell(r)} "
            f"| {r.get('params', 0):,} "
            f"| {minutes(r.get('train_seconds'))} | {r.get('hardware', '-')} | {short_commit(r)} "
            f"| {r.get('test_pairs', '-')} "
            + "".join(f"| {score_cell(r, key)} " for key, _ in columns)
            + f"| {ci} | {delta} |"
        )
    if intervals:
        lines.append(
            "\nPSNR: the mean of both sources' per-pair PSNR; intervals: 95 % bootstrap over the test pairs "
            "(runs with per-pair scores, scores.npz); Δ vs best: paired, on the same test pairs."
        )
    return "\n".join(lines)


def compare(run_a: str, run_b: str, on: str = "test") -> str:
    """Two runs scored on the same pairs (``on``: test, or val: the validation pairs, where levers are chosen):
    each score with its interval, and the paired difference."""
    name = SCORES_FILE if on == "test" else VAL_SCORES_FILE
    a, b = checked_scores(run_a, name), checked_scores(run_b, name)
    missing = [r for r, s in ((run_a, a), (run_b, b)) if s is None]
    if missing:
        raise ConfigError(
            f"no per-pair scores ({name}) in {', '.join(missing)}: runs and evaluations write them; "
            "re-score an older run with python -m mixsep.evaluate ckpt_path=<its checkpoint>"
        )
    if len(a["pair"]) != len(b["pair"]):
        raise ConfigError(f"{run_a} and {run_b} were scored on different numbers of test pairs: no paired comparison")
    lines = [
        f"A = {run_a}, B = {run_b}: {len(a['pair']):,} {'test' if on == 'test' else 'validation'} pairs, 95 % "
        "bootstrap intervals over the pairs",
        "",
        "| score | A | B | A − B (paired) | A − B (unpaired) |",
        "|---|---:|---:|---:|---:|",
    ]
    shared = [k for k in a if k in b and k != "pair"]  # what both runs have (an older run: fewer scores)
    only = sorted(set(a).symmetric_difference(b))
    keys = [("psnr (both)", pair_psnr(a), pair_psnr(b))] + [(k, a[k], b[k]) for k in shared]
    for name, x, y in keys:
        d = decimals(name)
        lines.append(
            f"| {name} | {interval(*bootstrap_mean(x), d)} | {interval(*bootstrap_mean(y), d)} "
            f"| {interval(*paired_difference(x, y), d, '+')} | {interval(*unpaired_difference(x, y), d, '+')} |"
        )
    lower = [k for k, _, _ in keys if score_of(k) and not score_of(k).higher_is_better]
    if lower:
        lines.append(f"\nLower is better for {', '.join(lower)}; higher for the others.")
    if only:
        lines.append(f"\nNot compared (scored in one run only): {', '.join(only)}.")
    return "\n".join(lines)


def bar_chart(path: str | Path, groups: list[tuple[str, int, list[dict]]]) -> None:
    """One row of panels (PSNR, SSIM) per group of runs ranked together, titled with its test-pair count
    and source pair; bars labelled with the run folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widest = max(len(rows) for _, _, rows in groups)
    fig, axes = plt.subplots(len(groups), 2, figsize=(max(8, 1.3 * widest), 4.8 * len(groups)), squeeze=False)
    for (sources, count, rows), panel in zip(groups, axes):
        rows = sorted(rows, key=rank_key)
        label = lambda r: f"{run_name(r)}\n{r.get('model')}" if r.get("experiment") != "baseline" else r["model"]
        labels = [label(r).replace("baseline: ", "baseline\n") for r in rows]
        for ax, metric, ylabel in ((panel[0], "psnr", "PSNR (dB)"), (panel[1], "ssim", "SSIM")):
            x = torch.arange(len(rows)).float()
            gray, color = (source.label.replace("_", " ") for source in parse_pair(sources))
            ax.bar(x - 0.2, [r[f"test/mnist_{metric}"] for r in rows], width=0.4, label=f"gray ({gray})")
            ax.bar(x + 0.2, [r[f"test/cifar_{metric}"] for r in rows], width=0.4, label=f"colour ({color})")
            ax.set_xticks(x.tolist(), labels, fontsize=7, rotation=30, ha="right")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{count:,} test pairs of {sources}", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle("mixsep leaderboard (fixed test pairs, data range 1)")
    fig.tight_layout()
    write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=100), keep_suffix=True)  # a link replaced, not followed
    plt.close(fig)


def parse_args(argv: list[str] | None):
    parser = ArgumentParser(prog="mixsep report", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", help="run folders, multirun folders or metrics.json files")
    add = parser.add_argument
    add("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="paired comparison of two runs on the same test pairs")
    add("--on", choices=("test", "val"), default="test", help="--compare on the test or the validation pairs")
    add("-o", "--output", help="also write the Markdown report to this file")
    add("--chart", help="bar chart PNG (default: beside --output; else leaderboard.png in the first DIR)")
    add("--overwrite", action="store_true", help="replace an earlier -o / --chart file")
    add("--data-root", help="data for the baselines (default: MIXSEP_DATA_ROOT)")
    add("--cache-dir")
    add("--include-debug", action="store_true", help="also list debug runs (debug=...); a partial test is never ranked")
    add("--test-pairs", type=positive_int, default=10000, help="the baselines' pairs when no run says how many")
    args = parser.parse_args(argv)
    if not args.compare and not args.dirs:
        parser.error("give run folders (e.g. outputs/) or --compare RUN_A RUN_B")
    return args


def ranked_groups(runs: list[dict], args) -> tuple[list[tuple[str, int, list[dict]]], list[str]]:
    """Runs on different source pairs or numbers of test pairs are never ranked together: one group each,
    with its own baselines scored on its pairs. A group whose sources are not at hand here (a source of one's
    own not declared, its files missing) is left out, one line per run saying why: the others are still ranked."""
    key = lambda r: (run_sources(r), int(r.get("test_pairs") or args.test_pairs))
    groups = sorted({key(r) for r in runs}) or [(DEFAULT_SOURCES, args.test_pairs)]
    grouped = {group: [r for r in runs if key(r) == group] for group in groups}
    ranked, left_out = [], []
    for (sources, count), rows in grouped.items():
        try:
            ranked.append((sources, count, rows + baseline_rows(args.data_root, args.cache_dir, count, sources)))
        except Exception as err:
            fixable = user_error(err)
            if fixable is None:
                raise
            why = f"its sources {sources} are not at hand here ({' '.join(str(fixable).split())})"
            left_out += [f"- {r['path']}: {why}" for r in rows] or [f"- the baselines on {sources}: {why}"]
    return ranked, left_out


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    if args.compare:
        text = compare(*args.compare, on=args.on)
        print(text)
        return text
    all_runs, bad_records = read_runs(args.dirs, include_debug=args.include_debug)
    unscored, bad_status = unscored_runs(args.dirs)
    if not all_runs and not unscored:
        sys.exit(f"mixsep: {nothing_to_report(args.dirs, bad_records + bad_status)}")
    groups, left_out = ranked_groups([r for r in all_runs if rankable(r)], args)
    left_out = bad_records + bad_status + left_out
    listed = {line.split(":", 1)[0].removeprefix("- ") for line in unscored}
    unscored += [  # every run left out says why
        f"- {r['path']}: {why_not_ranked(r)}"
        for r in all_runs
        if not rankable(r) and r["path"] not in listed and not str(r.get("experiment", "")).startswith("prior/")
    ]
    tables = [
        (f"Scored on {count:,} test pairs of {sources}:\n\n" if len(groups) > 1 else "") + leaderboard(rows)
        for sources, count, rows in groups
    ]
    sweeps = [report_sweep(Path(d)) for d in args.dirs if is_sweep(Path(d))]
    if unscored:
        tables.append("Runs without final scores (not ranked):\n\n" + "\n".join(unscored))
    if left_out:
        tables.append("Left out (not ranked here):\n\n" + "\n".join(left_out))
        for line in left_out:
            print(f"mixsep.report: left out {line.removeprefix('- ')}", file=sys.stderr)
    text = "\n\n".join([*sweeps, *tables, reported_block()])
    if any(str(r.get("experiment", "")).startswith("prior/") for r in all_runs):
        text += "\n\nEarlier systems rerun by mixsep (`experiment=prior/...`):\n\n" + prior_table(all_runs)
    print(text)
    if args.output:
        write_text_atomically(args.output, text + "\n")
    if not groups:
        return text
    first = Path(args.dirs[0])  # the chart: --chart, else beside --output, else in the first folder given
    beside = Path(args.output).with_suffix(".png") if args.output else None
    chart = Path(args.chart or beside or (first if first.is_dir() else first.parent) / "leaderboard.png")
    bar_chart(chart, groups)
    print(f"\n(chart: {chart})")
    return text


def nothing_to_report(dirs: list[str], left_out: list[str]) -> str:
    """Why there is no run to report, and what to give instead."""
    missing = [d for d in dirs if not Path(d).exists()]
    if missing:
        where = f"no such folder: {', '.join(missing)}"
    elif left_out:
        more = f" (and {len(left_out) - 1} more)" if len(left_out) > 1 else ""
        where = f"no run record under {' '.join(dirs)} is one mixsep wrote: {left_out[0].removeprefix('- ')}{more}"
    else:
        where = f"no metrics.json under {' '.join(dirs)}"
    return f"{where}; give run folders, sweep folders or metrics.json files (e.g. outputs/)"


def cli() -> None:
    with one_line_errors(os_error="cannot write the report ({error}): choose another --chart / -o"):
        load_extensions()  # MIXSEP_EXTENSIONS: the scores and sources of one's own the runs were made with
        main()


if __name__ == "__main__":
    cli()
