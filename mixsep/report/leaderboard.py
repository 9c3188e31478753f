"""``python -m mixsep.report DIR [DIR ...]``: a Markdown leaderboard of every metrics.json found.

Rows are ranked by the mean of the two PSNRs, beside the trivial baselines scored on the same fixed test pairs.
Numbers published elsewhere are listed apart, never ranked, each with the reason it cannot be compared.
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
from mixsep.files import check_outputs, write_atomically, write_text_atomically
from mixsep.models.metrics import RANK_SCORE, SOURCES, decimals, image_metrics, score_of
from mixsep.record import scores as run_scores
from mixsep.record.provenance import short_commit
from mixsep.record.status import effective_status
from mixsep.report import stats
from mixsep.report.published import prior_table, reported_block
from mixsep.report.sweep import is_sweep, report_sweep
from mixsep.report.tables import failed, interval, markdown_table, minutes, read_run, score_cell, score_columns

RANK_KEYS = tuple(f"test/{source}_{RANK_SCORE}" for source in SOURCES)
# what the report reads in a run folder (never replaced by -o or the chart)
RUN_RECORDS = ("metrics.json", "status.json", run_scores.SCORES_FILE, run_scores.VAL_SCORES_FILE)
FLAGS = "-o / --chart"
SCORE_ARRAYS = ("pair", "mnist_psnr", "cifar_psnr")  # what a comparison and an interval need of scores.npz
BASELINES = {  # trivial separations, scored exactly like the models
    "baseline: MNIST := 0, CIFAR := clamp(2·mix)": lambda mix: (torch.zeros_like(mix), (2 * mix).clamp(0, 1)),
    "baseline: both := mix": lambda mix: (mix, mix),
}


def read_runs(dirs: list[str | Path], include_debug: bool = False) -> tuple[list[dict], list[str], list[str]]:
    """The runs under the folders (debug runs only with ``include_debug``), a line per run without final scores
    saying why, and a line per record left out (not of the kinds mixsep writes)."""
    runs, unscored, left_out = [], [], []
    for given in map(Path, dirs):
        if given.is_file():
            records = [(given, None)]
        else:
            folders = sorted({p.parent for name in ("metrics.json", "status.json") for p in given.rglob(name)})
            records = [(folder / "metrics.json", folder / "status.json") for folder in folders]
        for metrics_file, status_file in records:
            metrics, status = read_run(metrics_file, status_file, left_out)
            if metrics is None:  # left out: read_record says why
                continue
            folder, debug = metrics_file.parent, bool(metrics.get("debug_mode"))
            listed = metrics and (include_debug or not debug)
            if listed:
                runs.append({**metrics, "path": str(folder)})
            if rankable(metrics):
                continue
            if status and not debug:
                unscored.append(f"{folder}: {unscored_detail(status)}")
            elif listed and not str(metrics.get("experiment", "")).startswith("prior/"):
                unscored.append(f"{folder}: {why_not_ranked(metrics)}")
    return runs, unscored, left_out


def find_runs(dirs: list[str | Path], ranked_only: bool = True, include_debug: bool = False) -> list[dict]:
    """Runs under the folders; ``ranked_only``: those the leaderboard ranks."""
    return [m for m in read_runs(dirs, include_debug)[0] if not ranked_only or rankable(m)]


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
    """The sources a row was scored on, and those its model was trained on where they differ."""
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
    rows = []
    for name, rule in BASELINES.items():
        metrics = [image_metrics() for _ in SOURCES]
        for batch in dm.test_dataloader():
            mix, *targets = dm.make_batch(*batch)
            for metric, estimate, target in zip(metrics, rule(mix), targets):
                metric.update(estimate, target)
        scores = {f"test/{s}_{k}": float(v) for s, m in zip(SOURCES, metrics) for k, v in m.compute().items()}
        row = {"model": name, "experiment": "baseline", "params": 0, "train_seconds": 0, "hardware": "-", "path": "-"}
        rows.append({**row, "test_pairs": len(dm.test_pair_ids), "sources": sources, **scores})
    return rows


def run_name(row: dict) -> str:
    """The run folder, relative to the current folder where it lies below it ("-" for a baseline)."""
    path = row.get("path", "-")
    relative = os.path.relpath(path) if path != "-" else path
    return path if relative.startswith("..") else relative


def interval_cells(rows: list[dict]) -> dict[int, tuple[str, str]]:
    """Per row with per-pair scores: the 95 % interval of its mean PSNR, and its paired difference from the best."""
    scored = {i: scores_or_none(r["path"]) for i, r in enumerate(rows) if r.get("path", "-") != "-"}
    scored = {i: stats.pair_psnr(s) for i, s in scored.items() if s is not None}
    best = min(scored, key=lambda i: rank_key(rows[i]), default=None)
    cells = {}
    for i, values in scored.items():
        if i == best:
            delta = "best"
        elif len(values) == len(scored[best]):
            delta = interval(*stats.paired_difference(values, scored[best], n_boot=1000), sign="+")
        else:
            delta = "-"
        cells[i] = (interval(*stats.bootstrap_mean(values, n_boot=1000)), delta)
    return cells


def scores_or_none(run: str | Path) -> dict[str, np.ndarray] | None:
    """A row's per-pair scores for its interval; a file that cannot give one leaves the row without (said)."""
    try:
        return run_scores.read_scores(run, needs=SCORE_ARRAYS)
    except MixsepError as err:
        print(f"mixsep.report: no interval for {run}: {err}", file=sys.stderr)
        return None


def leaderboard(rows: list[dict]) -> str:
    """The Markdown table of runs (and baselines) ranked together, best first."""
    rows = sorted(rows, key=rank_key)
    intervals = interval_cells(rows)
    columns = score_columns(rows)
    head = "#|run|model|experiment|sources|params|training time|hardware|commit|test pairs".split("|")
    head += [heading for _, heading in columns] + ["PSNR, 95 % CI", "Δ vs best, 95 % CI"]
    table = [
        [i, run_name(r), r.get("model", "?"), r.get("experiment", "-"), sources_cell(r), f"{r.get('params', 0):,}"]
        + [minutes(r.get("train_seconds")), r.get("hardware", "-"), short_commit(r), r.get("test_pairs", "-")]
        + [score_cell(r, key) for key, _ in columns]
        + list(intervals.get(i - 1, ("-", "-")))
        for i, r in enumerate(rows, 1)
    ]
    text = markdown_table(head, table, "lllllrrllr" + "r" * (len(columns) + 2))
    if intervals:
        text += (
            "\n\nPSNR: the mean of both sources' per-pair PSNR; intervals: 95 % bootstrap over the test pairs "
            "(runs with per-pair scores, scores.npz); Δ vs best: paired, on the same test pairs."
        )
    return text


def compare(run_a: str, run_b: str, on: str = "test") -> str:
    """Two runs scored on the same pairs (``on``: test, or val: the validation pairs, where levers are chosen):
    each score with its interval, and the paired difference."""
    name = run_scores.SCORES_FILE if on == "test" else run_scores.VAL_SCORES_FILE
    a, b = run_scores.read_scores(run_a, name, SCORE_ARRAYS), run_scores.read_scores(run_b, name, SCORE_ARRAYS)
    missing = [r for r, s in ((run_a, a), (run_b, b)) if s is None]
    if missing:
        raise ConfigError(
            f"no per-pair scores ({name}) in {', '.join(missing)}: runs and evaluations write them; "
            "re-score an older run with python -m mixsep.evaluate ckpt_path=<its checkpoint>"
        )
    if len(a["pair"]) != len(b["pair"]):
        raise ConfigError(f"{run_a} and {run_b} were scored on different numbers of test pairs: no paired comparison")
    shared = [k for k in a if k in b and k != "pair"]  # what both runs have (an older run: fewer scores)
    scores = [("psnr (both)", stats.pair_psnr(a), stats.pair_psnr(b))] + [(k, a[k], b[k]) for k in shared]
    rows = [compared_row(key, x, y) for key, x, y in scores]
    pairs = f"{len(a['pair']):,} {'test' if on == 'test' else 'validation'} pairs"
    head = ["score", "A", "B", "A − B (paired)", "A − B (unpaired)"]
    text = f"A = {run_a}, B = {run_b}: {pairs}, 95 % bootstrap intervals over the pairs\n\n"
    text += markdown_table(head, rows, "lrrrr")
    lower = [k for k, _, _ in scores if score_of(k) and not score_of(k).higher_is_better]
    if lower:
        text += f"\n\nLower is better for {', '.join(lower)}; higher for the others."
    only = sorted(set(a).symmetric_difference(b))
    if only:
        text += f"\n\nNot compared (scored in one run only): {', '.join(only)}."
    return text


def compared_row(key: str, a: np.ndarray, b: np.ndarray) -> list[str]:
    """A score of both runs with their intervals, and their paired and unpaired differences."""
    d = decimals(key)
    means = [interval(*stats.bootstrap_mean(x), d) for x in (a, b)]
    differences = (stats.paired_difference(a, b), stats.unpaired_difference(a, b))
    return [key, *means, *(interval(*difference, d, "+") for difference in differences)]


def bar_chart(path: str | Path, groups: list[tuple[str, int, list[dict]]]) -> None:
    """One row of panels (PSNR, SSIM) per group of runs ranked together; bars labelled with the run folder."""
    from matplotlib.figure import Figure

    widest = max(len(rows) for _, _, rows in groups)
    fig = Figure(figsize=(max(8, 1.3 * widest), 4.8 * len(groups)))
    for (sources, count, rows), panel in zip(groups, fig.subplots(len(groups), 2, squeeze=False)):
        rows = sorted(rows, key=rank_key)
        label = lambda r: f"{run_name(r)}\n{r.get('model')}" if r.get("experiment") != "baseline" else r["model"]
        labels = [label(r).replace("baseline: ", "baseline\n") for r in rows]
        gray, color = (source.label.replace("_", " ") for source in parse_pair(sources))
        x = np.arange(len(rows))
        for ax, metric, ylabel in ((panel[0], "psnr", "PSNR (dB)"), (panel[1], "ssim", "SSIM")):
            for shift, source, name in ((-0.2, "mnist", f"gray ({gray})"), (0.2, "cifar", f"colour ({color})")):
                bars = [r.get(f"test/{source}_{metric}") for r in rows]  # a missing or failed score: no bar
                ax.bar(x + shift, [math.nan if v is None else v for v in bars], width=0.4, label=name)
            ax.set_xticks(x, labels, fontsize=7, rotation=30, ha="right")
            ax.set(ylabel=ylabel)
            ax.set_title(f"{count:,} test pairs of {sources}", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle("mixsep leaderboard (fixed test pairs, data range 1)")
    fig.tight_layout()
    write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=100), keep_suffix=True)  # a link replaced, not followed


def parse_args(argv: list[str] | None):
    parser = ArgumentParser(prog="mixsep report", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("dirs", nargs="*", help="run folders, multirun folders or metrics.json files")
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


def output_files(args) -> list[Path]:
    """The files ``main`` writes: ``-o``, and the chart (``--chart``, else beside ``-o``, else leaderboard.png in
    the first DIR); none for ``--compare``."""
    if args.compare:
        return []
    output, first = Path(args.output) if args.output else None, Path(args.dirs[0])
    chart = args.chart or (output and output.with_suffix(".png"))
    chart = Path(chart or (first if first.is_dir() else first.parent) / "leaderboard.png")
    return [path for path in (output, chart) if path is not None]


def ranked_groups(runs: list[dict], args) -> tuple[list[tuple[str, int, list[dict]]], list[str]]:
    """Runs on different source pairs or numbers of test pairs are never ranked together: one group each,
    with its own baselines scored on its pairs. A group whose sources are not at hand here (a source of one's
    own not declared, its files missing) is left out, one line per run saying why: the others are still ranked."""
    key = lambda r: (run_sources(r), int(r.get("test_pairs") or args.test_pairs))
    groups = sorted({key(r) for r in runs}) or [(DEFAULT_SOURCES, args.test_pairs)]
    ranked, left_out = [], []
    for sources, count in groups:
        rows = [r for r in runs if key(r) == (sources, count)]
        try:
            ranked.append((sources, count, rows + baseline_rows(args.data_root, args.cache_dir, count, sources)))
        except Exception as err:
            fixable = user_error(err)
            if fixable is None:
                raise
            why = f"its sources {sources} are not at hand here ({' '.join(str(fixable).split())})"
            left_out += [f"{r['path']}: {why}" for r in rows] or [f"the baselines on {sources}: {why}"]
    return ranked, left_out


def main(argv: list[str] | None = None) -> str:
    """The report (or ``--compare``'s table), printed, written to ``-o``, and the chart; its text."""
    args = parse_args(argv)
    if args.compare:
        text = compare(*args.compare, on=args.on)
        print(text)
        return text
    runs, unscored, left_out = read_runs(args.dirs, include_debug=args.include_debug)
    if not runs and not unscored:
        sys.exit(f"mixsep: {nothing_to_report(args.dirs, left_out)}")
    groups, not_at_hand = ranked_groups([r for r in runs if rankable(r)], args)
    left_out += not_at_hand
    tables = [
        (f"Scored on {count:,} test pairs of {sources}:\n\n" if len(groups) > 1 else "") + leaderboard(rows)
        for sources, count, rows in groups
    ]
    sweeps = [report_sweep(Path(d)) for d in args.dirs if is_sweep(Path(d))]
    lists = {"Runs without final scores (not ranked):": unscored, "Left out (not ranked here):": left_out}
    tables += [f"{title}\n\n" + "\n".join(f"- {line}" for line in lines) for title, lines in lists.items() if lines]
    for line in left_out:
        print(f"mixsep.report: left out {line}", file=sys.stderr)
    text = "\n\n".join([*sweeps, *tables, reported_block()])
    if any(str(r.get("experiment", "")).startswith("prior/") for r in runs):
        text += "\n\nEarlier systems rerun by mixsep (`experiment=prior/...`):\n\n" + prior_table(runs)
    print(text)
    if args.output:
        write_text_atomically(args.output, text + "\n")
    if groups:
        chart = output_files(args)[-1]
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
        where = f"no run record under {' '.join(dirs)} is one mixsep wrote: {left_out[0]}{more}"
    else:
        where = f"no metrics.json under {' '.join(dirs)}"
    return f"{where}; give run folders, sweep folders or metrics.json files (e.g. outputs/)"


def check_report_outputs(args) -> None:
    """-o and the chart never replace a run record or a file given, never write through a link, and replace an
    earlier file only with --overwrite."""
    outputs = output_files(args)
    if len(set(outputs)) < len(outputs):
        raise MixsepError(f"-o {outputs[0]} is also where the chart goes: give --chart another file")
    for path in outputs:
        if path.name in RUN_RECORDS:
            raise MixsepError(f"{path} is a run record the report reads: choose another {FLAGS}")
        if path.is_symlink():
            raise MixsepError(
                f"{path} is a symbolic link (to {os.readlink(path)}); the report does not write through links: "
                f"remove it, or choose another {FLAGS}"
            )
    # the default chart (leaderboard.png in the folder reported on) is the report's own: a report run again
    # replaces it and says so; a file the user named with -o or --chart is replaced only with --overwrite
    overwrite = args.overwrite or not (args.output or args.chart)
    for path in check_outputs(outputs, [Path(d) for d in args.dirs if Path(d).is_file()], overwrite, FLAGS):
        print(f"mixsep.report: replacing {path}", file=sys.stderr)  # stdout: the report itself


def cli(argv: list[str] | None = None) -> None:
    with one_line_errors(os_error=f"cannot write the report ({{error}}): choose another {FLAGS}"):
        check_report_outputs(parse_args(argv))
        load_extensions()  # MIXSEP_EXTENSIONS: the scores and sources of one's own the runs were made with
        main(argv)
