"""The report of one Hydra sweep folder: a row per job, a column per swept override, the job it picks.

A sweep picks by the validation objective (metrics.json ``objective``), never by a test score.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import yaml

from mixsep.files import write_atomically
from mixsep.models.metrics import decimals
from mixsep.record.status import BadRecord, effective_status
from mixsep.report.stats import t_interval
from mixsep.report.tables import fmt, markdown_table, read_run, score_cell, score_columns

MAX_SWEEP_YAML_BYTES = 1 << 20  # Hydra's multirun.yaml is a few kB, a job's overrides.yaml a few hundred bytes


def read_sweep_yaml(path: Path) -> object:
    """The YAML in one of a sweep's files (None where there is none); BadRecord when it is too large, unreadable,
    not YAML, or has an anchor or alias (Hydra writes none: an alias can stand for an exponentially large tree)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SWEEP_YAML_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise BadRecord(f"{path}: cannot be read ({err.strerror or err})") from err
    if len(data) > MAX_SWEEP_YAML_BYTES:
        raise BadRecord(f"{path}: more than {MAX_SWEEP_YAML_BYTES:,} bytes, not a file Hydra wrote")
    try:
        text = data.decode()
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, (yaml.AnchorToken, yaml.AliasToken)):
                raise yaml.MarkedYAMLError(
                    problem="an anchor or alias (Hydra writes none)", problem_mark=token.start_mark
                )
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        where = f"line {err.problem_mark.line + 1}: " if err.problem_mark else ""
        raise BadRecord(f"{path}: not YAML Hydra writes ({where}{str(err.problem)[:80]})") from err
    except (ValueError, yaml.YAMLError) as err:  # UnicodeDecodeError included
        raise BadRecord(f"{path}: not YAML Hydra writes ({type(err).__name__})") from err
    except RecursionError as err:
        raise BadRecord(f"{path}: nested too deeply to be a file Hydra wrote") from err


def is_sweep(folder: Path) -> bool:
    return folder.is_dir() and (folder / "multirun.yaml").is_file()


def load_job(folder: Path) -> dict:
    """A job folder's row: its overrides (``overrides_problem`` where they are not Hydra's) and its records."""
    job, problems = {"job": folder.name, "overrides": {}, "overrides_problem": None}, []
    try:
        overrides = read_sweep_yaml(folder / ".hydra" / "overrides.yaml")
        overrides = overrides if isinstance(overrides, list) else []  # Hydra writes a list of strings
        pairs = (o.split("=", 1) for o in overrides if isinstance(o, str) and "=" in o)
        job["overrides"] = {key.lstrip("+~"): value for key, value in pairs}
    except BadRecord as err:
        job["overrides_problem"] = str(err)
    metrics, record = read_run(folder / "metrics.json", folder / "status.json", problems)
    if problems:  # its row says so; the others are still shown
        return {**job, "metrics": {}, "record": {"error": problems[0]}, "status": "left out"}
    state = effective_status(record) if record else ("completed" if metrics else "unknown")
    return {**job, "metrics": metrics, "record": record, "status": state}


def _job_order(folder: Path):
    head = folder.name.split("_", 1)[0]
    return (0, int(head), folder.name) if head.isdigit() else (1, 0, folder.name)


def swept_keys(jobs: list[dict]) -> list[str]:
    keys = sorted({k for j in jobs for k in j["overrides"]})
    return [k for k in keys if len({j["overrides"].get(k) for j in jobs}) > 1]


def _number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def picked(jobs: list[dict]) -> dict | None:
    """The job a sweep would pick: the best validation objective (higher is better for PSNR)."""
    scored = [j for j in jobs if isinstance(j["metrics"].get("objective"), (int, float))]
    return max(scored, key=lambda j: j["metrics"]["objective"]) if scored else None


def status_cell(job: dict) -> str:
    """The job's state as its status.json says it, in words."""
    state, record = job["status"], job["record"]
    requeues, step = record.get("requeues") or 0, record.get("step")
    if state == "pruned":
        value = f" (objective {record['value']:.3f})" if isinstance(record.get("value"), float) else ""
        return f"pruned at epoch {record.get('epoch', '?')}{value}"
    if state in ("failed", "left out"):
        return f"{state}: {(record.get('error') or '')[: 80 if state == 'failed' else 160]}"
    if state == "lost":
        return f"lost at step {step if step is not None else '?'} (run it again to resume)"
    if state in ("requeued", "cancelled"):
        return f"{state} ({record.get('reason')}{f', {requeues}×' if state == 'requeued' else ''})"
    return f"{state} (re-queued {requeues}×)" if requeues else state


def sweep_table(jobs: list[dict]) -> str:
    keys, best = swept_keys(jobs), picked(jobs)
    objective = next((j["metrics"].get("optimized_metric") for j in jobs if j["metrics"]), None) or "objective"
    columns = score_columns([j["metrics"] for j in jobs])
    rows = [
        [j["job"] + (" **← pick**" if j is best else ""), *(j["overrides"].get(k, "-") for k in keys)]
        + [fmt(_number(j["metrics"].get("objective")), 3), *(score_cell(j["metrics"], key) for key, _ in columns)]
        + [status_cell(j)]
        for j in jobs
    ]
    head = ["job", *keys, f"{objective} (validation)", *(heading for _, heading in columns), "status"]
    text = markdown_table(head, rows)
    if best is not None:
        text += (
            f"\n\nPicked by the validation objective ({objective}): job {best['job']}. Test scores are "
            "shown for reading, never used to pick."
        )
    if "seed" in keys:
        text += "\n\n" + seed_table(jobs, [k for k in keys if k != "seed"])
    return text


def seed_table(jobs: list[dict], keys: list[str]) -> str:
    """Mean ± std over seeds of every configuration (jobs that differ only in seed)."""
    groups: dict[tuple, list[dict]] = {}
    for j in jobs:
        if j["metrics"]:
            groups.setdefault(tuple(j["overrides"].get(k, "-") for k in keys), []).append(j["metrics"])
    columns = [("objective", "objective"), *score_columns([j["metrics"] for j in jobs])]
    rows = []
    for config, runs in groups.items():
        cells = [*config, str(len(runs))]
        for key, _ in columns:
            values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
            mean, spread, lo, hi = t_interval(values) if values else (None, None, None, None)
            digits = 3 if key == "objective" else decimals(key)
            cell = f"{fmt(mean, digits)} ± {fmt(spread, digits)}" if values else "-"
            if key == "objective" and len(values) > 1:
                cell += f" [{fmt(lo, digits)}, {fmt(hi, digits)}]"
            cells.append(cell)
        rows.append(cells)
    table = markdown_table([*keys, "seeds", *(heading for _, heading in columns)], rows)
    return f"Over seeds (mean ± std; the objective's 95 % t-interval over the seeds in brackets):\n\n{table}"


def log_sampled(sweep: Path) -> set[str]:
    """Parameters the sweeper samples on a log scale (``tag(log, ...)`` in ``hydra.sweeper.params``)."""
    config = read_sweep_yaml(sweep / "multirun.yaml")
    for key in ("hydra", "sweeper", "params"):
        config = config.get(key) if isinstance(config, dict) else None
    return {str(key) for key, spec in config.items() if "log" in str(spec)} if isinstance(config, dict) else set()


def objective_plot(path: Path, jobs: list[dict], log_keys: set[str] = frozenset()) -> Path | None:
    """The objective against each swept numeric parameter (log-sampled or spanning 20×: a log axis); None if none."""
    numeric = [
        k for k in swept_keys(jobs) if k != "seed" and all(_number(j["overrides"].get(k)) is not None for j in jobs)
    ]
    scored = [j for j in jobs if isinstance(j["metrics"].get("objective"), (int, float))]
    if not numeric or not scored:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4 * len(numeric), 3.5))
    best = picked(jobs)
    for ax, key in zip(fig.subplots(1, len(numeric), squeeze=False)[0], numeric):
        xs = [_number(j["overrides"][key]) for j in scored]
        ax.scatter(xs, [j["metrics"]["objective"] for j in scored])
        best_x, best_y = _number(best["overrides"][key]), best["metrics"]["objective"]
        ax.scatter([best_x], [best_y], marker="*", s=200, color="tab:red", label="picked (validation)")
        if min(xs) > 0 and (key in log_keys or max(xs) / min(xs) >= 20):
            ax.set_xscale("log")
        ax.set(xlabel=key, ylabel=scored[0]["metrics"].get("optimized_metric", "objective"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    if path.exists() or path.is_symlink():
        print(f"mixsep.report: replacing {path}", file=sys.stderr)  # stdout: the report itself
    write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=100), keep_suffix=True)  # a link replaced, not followed
    return path


def report_sweep(sweep: Path) -> str:
    folders = sorted((p for p in sweep.iterdir() if (p / ".hydra").is_dir()), key=_job_order)
    jobs = [load_job(folder) for folder in folders]  # every job folder, finished or not
    text = f"## Sweep {sweep.name}: {len(jobs)} jobs\n\n" + sweep_table(jobs)
    problems = [j["overrides_problem"] for j in jobs if j["overrides_problem"]]
    try:
        log_keys = log_sampled(sweep)
    except BadRecord as err:  # the report goes on: no log axes from it
        log_keys, problems = set(), [*problems, str(err)]
    plot = objective_plot(sweep / "objective.png", jobs, log_keys)
    if plot is not None:
        text += f"\n\n(objective plot: {plot})"
    for problem in problems:
        print(f"mixsep.report: left out {problem}", file=sys.stderr)
    if problems:
        text += "\n\nLeft out of this sweep's report:\n\n" + "\n".join(f"- {p}" for p in problems)
    return text
