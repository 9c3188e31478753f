from mixsep.report.leaderboard import cli

cli()
