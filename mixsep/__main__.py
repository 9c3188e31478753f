"""``python -m mixsep``: the same as ``python -m mixsep.run``."""

from mixsep.run import main

main()
