"""``python -m mixsep.report``: the leaderboard (``mixsep.report.leaderboard``), its output files checked first."""

from mixsep.report.leaderboard import cli

if __name__ == "__main__":
    cli()
