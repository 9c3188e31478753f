"""The report of one Hydra sweep folder: a row per job, a column per swept override, the job it picks.

A sweep picks by the validation objective (metrics.json ``objective``), never by a test score.
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

import yaml

from mixsep.files import write_atomically
from mixsep.models.metrics import decimals
from mixsep.record.status import STATUS_KINDS, BadRecord, effective_status, load_record
from mixsep.report.stats import t_interval
from mixsep.report.tables import METRICS_KINDS, fmt, score_cell, score_columns

MAX_SWEEP_YAML_BYTES = 1 << 20  # Hydra's multirun.yaml is a few kB, a job's overrides.yaml a few hundred bytes


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors or aliases (Hydra writes none): an alias can stand for an exponentially large tree."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent) or getattr(self.peek_event(), "anchor", None) is not None:
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "an anchor or alias (Hydra writes none)", mark)
        return super().compose_node(parent, index)


def read_sweep_yaml(path: Path) -> object:
    """The YAML in one of a sweep's files (None where there is none); BadRecord when it is over
    ``MAX_SWEEP_YAML_BYTES``, unreadable, not YAML, or uses anchors/aliases."""
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
        return yaml.load(data.decode(), Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader, aliases refused)
    except yaml.MarkedYAMLError as err:
        where = f"line {err.problem_mark.line + 1}: " if err.problem_mark else ""
        raise BadRecord(f"{path}: not YAML Hydra writes ({where}{str(err.problem)[:80]})") from err
    except (ValueError, yaml.YAMLError) as err:  # UnicodeDecodeError included
        raise BadRecord(f"{path}: not YAML Hydra writes ({type(err).__name__})") from err
    except RecursionError as err:
        raise BadRecord(f"{path}: nested too deeply to be a file Hydra wrote") from err


def test_columns(jobs: list[dict]) -> list[tuple[str, str, int]]:
    """(key, heading, decimals) of the test scores the jobs have: test/mnist_psnr -> "MNIST PSNR", 2."""
    return [(key, heading, decimals(key)) for key, heading in score_columns([j["metrics"] for j in jobs])]


def is_sweep(folder: Path) -> bool:
    return folder.is_dir() and (folder / "multirun.yaml").is_file()


def _overrides(job: Path) -> dict[str, str]:
    """The job's overrides; BadRecord when its overrides.yaml is not one Hydra writes."""
    path = job / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    overrides = read_sweep_yaml(path)
    overrides = overrides if isinstance(overrides, list) else []  # Hydra writes a list of strings
    pairs = (o.split("=", 1) for o in overrides if isinstance(o, str) and "=" in o)
    return {k.lstrip("+~"): v for k, v in pairs}


def load_jobs(sweep: Path) -> list[dict]:
    """Every job folder of the sweep (those with .hydra/), finished or not (a job whose overrides.yaml is not one
    Hydra writes: its row has none, ``overrides_problem`` says why)."""
    jobs = []
    for folder in sorted((p for p in sweep.iterdir() if (p / ".hydra").is_dir()), key=_job_order):
        try:
            metrics = load_record(folder / "metrics.json", METRICS_KINDS)
            status = load_record(folder / "status.json", STATUS_KINDS)
        except BadRecord as err:  # its row says so; the others are still shown
            jobs.append(left_out_job(folder, err))
            continue
        state = effective_status(status) if status else ("completed" if metrics else "unknown")
        pruned_at = {k: status.get(k) for k in ("epoch", "value")} if status.get("status") == "pruned" else None
        overrides, problem = _overrides_or_why(folder)
        job = {"job": folder.name, "overrides": overrides, "metrics": metrics, "status": state}
        job["overrides_problem"] = problem
        job.update(step=status.get("step"), error=status.get("error"), reason=status.get("reason"))
        jobs.append({**job, "requeues": status.get("requeues") or 0, "pruned_at": pruned_at})
    return jobs


def left_out_job(folder: Path, why: BadRecord) -> dict:
    """The row of a job whose record is not of the kinds mixsep writes: no scores, its status says why."""
    overrides, problem = _overrides_or_why(folder)
    job = {"job": folder.name, "overrides": overrides, "metrics": {}, "status": "left out"}
    job.update(overrides_problem=problem, error=str(why), step=None, reason=None, requeues=0, pruned_at=None)
    return job


def _overrides_or_why(folder: Path) -> tuple[dict[str, str], str | None]:
    try:
        return _overrides(folder), None
    except BadRecord as err:
        return {}, str(err)


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
    """running, requeued (count, reason), completed, failed (the error), cancelled, pruned (where): as status.json
    says."""
    state, n = job["status"], job["requeues"]
    if state == "pruned":
        at = job.get("pruned_at") or {}
        value = f" (objective {at['value']:.3f})" if isinstance(at.get("value"), float) else ""
        return f"pruned at epoch {at.get('epoch', '?')}{value}"
    if state == "failed":
        return f"failed: {(job['error'] or '')[:80]}"
    if state == "left out":
        return f"left out: {job['error'][:160]}"
    if state == "lost":
        return f"lost at step {job.get('step') if job.get('step') is not None else '?'} (run it again to resume)"
    if state in ("requeued", "cancelled"):
        return f"{state} ({job['reason']}{f', {n}×' if state == 'requeued' else ''})"
    return f"{state} (re-queued {n}×)" if n else state


def sweep_table(jobs: list[dict]) -> str:
    keys = swept_keys(jobs)
    best = picked(jobs)
    objective = next((j["metrics"].get("optimized_metric") for j in jobs if j["metrics"]), None) or "objective"
    columns = test_columns(jobs)
    head = ["job", *keys, f"{objective} (validation)", *(c[1] for c in columns), "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for j in jobs:
        m, mark = j["metrics"], " **← pick**" if j is best else ""
        scores = [score_cell(m, key) for key, _, d in columns]
        cells = [j["job"] + mark, *(j["overrides"].get(k, "-") for k in keys), fmt(_number(m.get("objective")), 3)]
        cells += [*scores, status_cell(j)]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines)
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
    cols = [("objective", "objective", 3), *test_columns(jobs)]
    lines = [
        "Over seeds (mean ± std; the objective's 95 % t-interval over the seeds in brackets):",
        "",
        "| " + " | ".join([*keys, "seeds", *(c[1] for c in cols)]) + " |",
        "|" + "---|" * (len(keys) + 1 + len(cols)),
    ]
    for config, runs in groups.items():
        cells = list(config) + [str(len(runs))]
        for key, _, digits in cols:
            values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            mean = fmt(_number(statistics.mean(values)), digits) if values else ""
            cell = f"{mean} ± {fmt(_number(spread), digits)}" if values else "-"
            if key == "objective" and len(values) > 1:
                _, _, lo, hi = t_interval(values)
                cell += f" [{fmt(_number(lo), digits)}, {fmt(_number(hi), digits)}]"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def log_sampled(sweep: Path) -> set[str]:
    """Parameters the sweeper samples on a log scale (``tag(log, ...)`` in ``hydra.sweeper.params``); BadRecord
    when multirun.yaml is not one Hydra writes (str() of its specs stays small: the file is capped, aliases refused)."""
    config = read_sweep_yaml(sweep / "multirun.yaml")
    for key in ("hydra", "sweeper", "params"):
        config = config.get(key) if isinstance(config, dict) else None
    return {str(key) for key, spec in config.items() if "log" in str(spec)} if isinstance(config, dict) else set()


def objective_plot(path: Path, jobs: list[dict], log_keys: set[str] = frozenset()) -> Path | None:
    """The objective against each swept numeric parameter, one panel each (a log axis for a parameter
    sampled on a log scale, or spanning 20× or more); None when none is numeric."""
    numeric = [
        k for k in swept_keys(jobs) if k != "seed" and all(_number(j["overrides"].get(k)) is not None for j in jobs)
    ]
    scored = [j for j in jobs if isinstance(j["metrics"].get("objective"), (int, float))]
    if not numeric or not scored:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(numeric), figsize=(4 * len(numeric), 3.5), squeeze=False)
    best = picked(jobs)
    for ax, key in zip(axes[0], numeric):
        xs = [_number(j["overrides"][key]) for j in scored]
        ax.scatter(xs, [j["metrics"]["objective"] for j in scored])
        best_x, best_y = _number(best["overrides"][key]), best["metrics"]["objective"]
        ax.scatter([best_x], [best_y], marker="*", s=200, color="tab:red", label="picked (validation)")
        if min(xs) > 0 and (key in log_keys or max(xs) / min(xs) >= 20):
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(scored[0]["metrics"].get("optimized_metric", "objective"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    if path.exists() or path.is_symlink():
        print(f"mixsep.report: replacing {path}", file=sys.stderr)  # stdout: the report itself
    try:  # a link placed there is replaced, never written through
        write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=100), keep_suffix=True)
    finally:
        plt.close(fig)
    return path


def report_sweep(sweep: Path) -> str:
    jobs = load_jobs(sweep)
    text = f"## Sweep {sweep.name}: {len(jobs)} jobs\n\n" + sweep_table(jobs)
    problems = [j["overrides_problem"] for j in jobs if j.get("overrides_problem")]
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
