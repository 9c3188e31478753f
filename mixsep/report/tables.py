"""Cells of the Markdown tables the reports print."""

from __future__ import annotations

import math


def fmt(v, digits: int = 2, sign: str = "") -> str:
    """A number to ``digits`` decimals (``sign="+"``: signed), a word as it is, a missing or non-finite value as -."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:{sign}.{digits}f}" if isinstance(v, float) else str(v)


def interval(mean: float, lo: float, hi: float, digits: int = 2, sign: str = "") -> str:
    """``mean [lo, hi]``: a value with its confidence interval."""
    return f"{fmt(mean, digits, sign)} [{fmt(lo, digits, sign)}, {fmt(hi, digits, sign)}]"


def minutes(seconds) -> str:
    return "-" if not seconds else f"{seconds / 60:.1f} min"
