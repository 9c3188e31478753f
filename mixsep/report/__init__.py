"""``python -m mixsep.report``: the leaderboard (leaderboard), a sweep's table (sweep), the statistics (stats), the
Markdown cells (tables) and the earlier reports' published numbers (published)."""
