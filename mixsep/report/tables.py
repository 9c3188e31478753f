"""What the reports share: the run records they read, their Markdown tables and the cells in them."""

from __future__ import annotations

import math
from pathlib import Path

from mixsep.models.metrics import SCORES, SOURCES, decimals, heading
from mixsep.record.status import NUMBER, STATUS_KINDS, TEXT, BadRecord, load_record

SCORE = (*NUMBER, type(None))  # null: a score that gave no finite mean
# the fields of a metrics.json the reports read, with the types mixsep writes them as (run.py, evaluate.py)
METRICS_KINDS = {
    **dict.fromkeys(("model", "experiment", "sources", "trained_on", "hardware", "optimized_metric"), TEXT),
    **dict.fromkeys(("train_seconds", "objective", "test/", "oracle/"), SCORE),
    **dict.fromkeys(("test_pairs", "global_step"), (int, type(None))),
    "params": (int,),
    "git_commit": TEXT,
    "provenance": {"git_commit": TEXT},
}


def read_run(metrics_file: Path, status_file: Path | None, left_out: list[str]) -> tuple[dict | None, dict | None]:
    """A run's metrics.json and status.json, each {} where there is none, None where it is not of the kinds mixsep
    writes (the reason, its file and field named, added to ``left_out``)."""
    records = []
    for path, kinds in ((metrics_file, METRICS_KINDS), (status_file, STATUS_KINDS)):
        try:
            records.append(load_record(path, kinds) if path else {})
        except BadRecord as err:
            left_out.append(str(err))
            records.append(None)
    return records[0], records[1]


def markdown_table(head: list[str], rows: list[list], align: str = "") -> str:
    """A Markdown table; ``align``: a letter per column, ``r`` for one aligned right (missing letters: left)."""
    rule = "|" + "".join("---:|" if a == "r" else "---|" for a in align.ljust(len(head)))
    return "\n".join(["| " + " | ".join(head) + " |", rule, *("| " + " | ".join(map(str, r)) + " |" for r in rows)])


def fmt(v, digits: int = 2, sign: str = "") -> str:
    """A number to ``digits`` decimals (``sign="+"``: signed), a word as it is, a missing or non-finite value as -."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:{sign}.{digits}f}" if isinstance(v, float) else str(v)


def score_cell(row: dict, key: str) -> str:
    """A row's score to its declared decimals: ``-`` where it was not scored with it, ``failed`` where it gave no
    finite mean (null in metrics.json)."""
    return "failed" if failed(row, key) else fmt(row.get(key), decimals(key))


def failed(row: dict, key: str) -> bool:
    """Was the row scored with ``key`` without a finite result (null in metrics.json, NaN in memory)?"""
    value = row.get(key, 0.0)
    return value is None or (isinstance(value, float) and math.isnan(value))


def interval(mean: float, lo: float, hi: float, digits: int = 2, sign: str = "") -> str:
    """``mean [lo, hi]``: a value with its confidence interval."""
    return f"{fmt(mean, digits, sign)} [{fmt(lo, digits, sign)}, {fmt(hi, digits, sign)}]"


def minutes(seconds) -> str:
    return "-" if not seconds else f"{seconds / 60:.1f} min"


def score_names(rows: list[dict]) -> list[str]:
    """The scores any of the rows has for both sources: the declared ones in their order, then any other."""
    gray, color = (f"test/{source}_" for source in SOURCES)
    present = {key.removeprefix(gray) for row in rows for key in row if key.startswith(gray)}
    present = {name for name in present if any(color + name in row for row in rows)}
    return [name for name in SCORES if name in present] + sorted(present - set(SCORES))


def score_columns(rows: list[dict]) -> list[tuple[str, str]]:
    """(key, heading) of each score column: ``test/mnist_psnr``, "MNIST PSNR", ... (a source's scores together)."""
    names = score_names(rows)
    return [(f"test/{source}_{name}", f"{source.upper()} {heading(name)}") for source in SOURCES for name in names]
