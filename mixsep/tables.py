"""Cells of the Markdown tables the reports print."""

from __future__ import annotations

import math


def fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def minutes(seconds) -> str:
    return "-" if not seconds else f"{seconds / 60:.1f} min"
