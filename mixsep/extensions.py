"""A user's own networks, sources and scores: Python modules that declare them (``@register_network``,
``@register_source``, ``register_score``), imported before a command builds anything. A run or an evaluation
names them in its config (``extensions: [my_module]``); every command also imports those in
``MIXSEP_EXTENSIONS`` (comma-separated), which is how ``separate``, ``report`` and ``export`` find them. A module
is found as Python finds any: the folder the command runs from, ``PYTHONPATH``, or an installed package."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable

from mixsep.errors import ConfigError

ENVIRONMENT_VARIABLE = "MIXSEP_EXTENSIONS"


def load_extensions(names: Iterable[str] | None = None) -> list[str]:
    """Import the named modules and those in ``MIXSEP_EXTENSIONS``; the names imported."""
    wanted = [*(names or []), *os.environ.get(ENVIRONMENT_VARIABLE, "").split(",")]
    loaded = []
    for name in dict.fromkeys(n.strip() for n in wanted if n and n.strip()):
        try:
            importlib.import_module(name)
        except ConfigError:
            raise  # a declaration the registry refused says why itself
        except ModuleNotFoundError as err:
            if err.name not in (name, name.split(".")[0]):
                raise ConfigError(f"extension {name} imports {err.name}, which is not installed") from err
            raise ConfigError(
                f"extensions names {name}, which Python cannot import: put {name.replace('.', '/')}.py in the folder "
                "you run from, or its folder on PYTHONPATH"
            ) from err
        except Exception as err:  # the user's module itself fails: where, in one line
            where = err.__traceback__
            while where.tb_next is not None:
                where = where.tb_next
            place = f"{where.tb_frame.f_code.co_filename}:{where.tb_lineno}"
            raise ConfigError(f"extension {name} fails on import ({place}): {type(err).__name__}: {err}") from err
        loaded.append(name)
    return loaded
