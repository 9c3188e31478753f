"""mixsep's Hydra configs: the design card's top-level ``conf/``, installed as the package ``mixsep.conf`` (the
wheel's ``mixsep/conf/``; an editable install maps it to this folder), so ``CONF_DIR`` is found wherever mixsep is."""

from pathlib import Path

CONF_DIR = str(Path(__file__).resolve().parent)
