"""``python -m mixsep.report``: the leaderboard (``mixsep.report.leaderboard``), its files checked before anything
is written: ``-o`` and the chart never replace a run record the report reads or a file given to it, never write
through a symbolic link, and replace an earlier file only with ``--overwrite``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mixsep.errors import MixsepError, one_line_errors
from mixsep.extensions import load_extensions
from mixsep.files import check_outputs
from mixsep.report import leaderboard
from mixsep.report.stats import SCORES_FILE, VAL_SCORES_FILE

RUN_RECORDS = ("metrics.json", "status.json", SCORES_FILE, VAL_SCORES_FILE)  # what the report reads in a run folder
FLAGS = "-o / --chart"


def check_report_outputs(args) -> None:
    outputs = leaderboard.output_files(args)
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
    named = {Path(p) for p in (args.output, args.chart) if p}
    replaced = check_outputs(
        outputs, [Path(d) for d in args.dirs if Path(d).is_file()], args.overwrite or not named, FLAGS
    )
    for path in replaced:
        print(f"mixsep.report: replacing {path}", file=sys.stderr)  # stdout: the report itself


def cli(argv: list[str] | None = None) -> None:
    with one_line_errors(os_error=f"cannot write the report ({{error}}): choose another {FLAGS}"):
        check_report_outputs(leaderboard.parse_args(argv))
        load_extensions()  # MIXSEP_EXTENSIONS: the scores and sources of one's own the runs were made with
        leaderboard.main(argv)


if __name__ == "__main__":
    cli()
