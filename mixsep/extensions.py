"""A user's own networks, sources and scores: Python modules that declare them (``@register_network``,
``@register_source``, ``register_score``), imported before a command builds anything, and only because the user
named them: in a run's or an evaluation's config (``extensions: [...]``) or in ``MIXSEP_EXTENSIONS``
(comma-separated), which every command and ``load_separator`` honour. A name is one of:

- a file: ``./my_net.py``, ``my_net.py``, ``/abs/path/my_net.py``, imported from that file as module ``my_net``
  (so a config's ``_target_: my_net.Thing`` finds it);
- a plain name ``my_net`` where ``my_net.py`` is a file in the current folder: the same;
- a module Python can import: an installed package's, or one in a folder on ``PYTHONPATH`` (``my_lab.nets``).

Nothing else in the folder a command starts in is imported: mixsep's commands leave it off Python's path, so a
downloaded folder's ``safetensors.py`` or ``hydra_plugins/`` never runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from mixsep.errors import ConfigError

ENVIRONMENT_VARIABLE = "MIXSEP_EXTENSIONS"
FROM_CONFIG = "the config's extensions=[...]"
FROM_ENVIRONMENT = f"the environment variable {ENVIRONMENT_VARIABLE}"


def named_extensions(names: Iterable[str] | None = None) -> dict[str, str]:
    """Each extension named, once, with where it was named (the config's ``extensions`` or the environment)."""
    if isinstance(names, str):  # extensions=my_net: one name (or several, comma-separated), not its letters
        names = names.split(",")
    named = [(str(n).strip(), FROM_CONFIG) for n in names or []]
    named += [(n.strip(), FROM_ENVIRONMENT) for n in os.environ.get(ENVIRONMENT_VARIABLE, "").split(",")]
    origins: dict[str, str] = {}
    for name, origin in named:
        if name:
            origins.setdefault(name, origin)
    return origins


def load_extensions(names: Iterable[str] | None = None) -> list[str]:
    """Import the named extensions and those in ``MIXSEP_EXTENSIONS``; the names imported. Each failure is one
    ConfigError line that says where the name came from."""
    loaded = []
    for name, origin in named_extensions(names).items():
        try:
            _import(name, origin)
        except ConfigError:
            raise  # a name mixsep cannot follow, or a declaration the registry refused: says why itself
        except ModuleNotFoundError as err:
            raise ConfigError(f"extension {name} imports {err.name}, which is not installed") from err
        except Exception as err:  # the user's module itself fails: where, in one line
            raise ConfigError(f"extension {name} fails on import ({_place(err)}): {type(err).__name__}: {err}") from err
        loaded.append(name)
    return loaded


def _import(name: str, origin: str) -> ModuleType:
    if _is_path(name):
        return _import_file(Path(name).expanduser(), name, origin)
    if not all(part.isidentifier() for part in name.split(".")):
        raise ConfigError(
            f"{origin} names {name!r}, which is neither a module (my_net, my_lab.nets) nor a Python file "
            "(./my_net.py): name one of those"
        )
    here = Path(f"{name}.py")
    if "." not in name and here.is_file():  # the user's file in the current folder, named by the user
        return _import_file(here, name, origin)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name not in _prefixes(name):
            raise
        nested = Path(*name.split(".")).with_suffix(".py")
        hint = f"name its file: ./{nested}" if nested.is_file() else "name its file (./my_net.py, /path/to/my_net.py)"
        raise ConfigError(
            f"{origin} names {name}, which is neither a file {nested} in {Path.cwd()} nor a module Python can import: "
            f"{hint}, or put its folder on PYTHONPATH"
        ) from err


def _is_path(name: str) -> bool:
    return name.endswith(".py") or "/" in name or os.sep in name or name.startswith("~")


def _prefixes(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def _import_file(path: Path, name: str, origin: str) -> ModuleType:
    """The module in the file ``path``, imported as its stem (once: a second call finds it imported)."""
    if path.suffix != ".py":
        hint = f"name the file itself: {name}.py" if path.with_suffix(".py").is_file() else "name a .py file"
        raise ConfigError(f"{origin} names {name}, which is not a Python file: {hint} (or a module: my_net)")
    if not path.is_file():
        raise ConfigError(f"{origin} names {name}, but there is no file {path.resolve()}: check the name and folder")
    path, module_name = path.resolve(), path.stem
    if not module_name.isidentifier():
        raise ConfigError(f"{origin} names {name}: a module's file name is a Python name (my_net.py); rename it")
    known = sys.modules.get(module_name)
    if known is not None:
        if _file_of(known) == path:
            return known
        raise ConfigError(
            f"{origin} names {name}, but a module {module_name} is already imported from {_file_of(known)}: "
            "rename the file"
        )
    elsewhere = _find_spec(module_name)
    if elsewhere is not None and (elsewhere.origin is None or Path(elsewhere.origin).resolve() != path):
        raise ConfigError(
            f"{origin} names {name}, whose name would hide the installed module {module_name} "
            f"({elsewhere.origin or 'a package'}): rename the file"
        )
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # as import does: a module that imports itself, Hydra's _target_, pickle
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _file_of(module: ModuleType) -> Path | None:
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file else None


def _find_spec(module_name: str):
    try:
        return importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None


def _place(err: BaseException) -> str:
    """Where the user's module failed: the file and line (a syntax error's own, else the traceback's last)."""
    if isinstance(err, SyntaxError):
        return f"{err.filename}:{err.lineno}"
    where = err.__traceback__
    while where.tb_next is not None:
        where = where.tb_next
    return f"{where.tb_frame.f_code.co_filename}:{where.tb_lineno}"
