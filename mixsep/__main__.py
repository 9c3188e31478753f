"""``python -m mixsep``: the same as ``python -m mixsep.run``."""

import sys

from mixsep.run import main
from mixsep.training.command_line import check_command_line

sys.argv[1:] = check_command_line(sys.argv[1:])
main()
