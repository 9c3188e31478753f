"""A user's own networks, sources and scores: Python modules imported before a command builds anything, only because
the user named them (a config's ``extensions: [...]``, or ``MIXSEP_EXTENSIONS``): a file (``./my_net.py``; a plain
``my_net`` whose file is in the current folder) imported from its path, or a module Python can import."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from mixsep.errors import ConfigError

ENVIRONMENT_VARIABLE = "MIXSEP_EXTENSIONS"


def load_extensions(names: Iterable[str] | str | None = None) -> list[str]:
    """Import the named extensions, then those in ``MIXSEP_EXTENSIONS``, each once; the names imported. Each
    failure is one ConfigError line that says where the name came from (the config or the environment)."""
    if isinstance(names, str):  # extensions=my_net: one name (or several, comma-separated), not its letters
        names = names.split(",")
    named = [(str(n).strip(), "the config's extensions=[...]") for n in names or []]
    from_environment = f"the environment variable {ENVIRONMENT_VARIABLE}"
    named += [(n.strip(), from_environment) for n in os.environ.get(ENVIRONMENT_VARIABLE, "").split(",")]
    loaded: list[str] = []
    for name, origin in named:
        if name and name not in loaded:
            _load(name, origin)
            loaded.append(name)
    return loaded


def _load(name: str, origin: str) -> None:
    try:
        _import(name, origin)
    except ConfigError:
        raise  # a name mixsep cannot follow, or a declaration the registry refused: says why itself
    except ModuleNotFoundError as err:
        raise ConfigError(f"extension {name} imports {err.name}, which is not installed") from err
    except Exception as err:  # the user's module itself fails: where, in one line
        raise ConfigError(f"extension {name} fails on import ({_place(err)}): {type(err).__name__}: {err}") from err


def _import(name: str, origin: str) -> ModuleType:
    if name.endswith(".py") or "/" in name or os.sep in name or name.startswith("~"):
        return _import_file(Path(name).expanduser(), name, origin)
    if not all(part.isidentifier() for part in name.split(".")):
        raise ConfigError(
            f"{origin} names {name!r}, which is neither a module (my_net, my_lab.nets) nor a Python file "
            "(./my_net.py): name one of those"
        )
    if "." not in name and Path(f"{name}.py").is_file():  # the user's file in the current folder, named by the user
        return _import_file(Path(f"{name}.py"), name, origin)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if not f"{name}.".startswith(f"{err.name}."):  # a module that the extension imports is missing
            raise
        nested = Path(*name.split(".")).with_suffix(".py")
        hint = f"name its file: ./{nested}" if nested.is_file() else "name its file (./my_net.py, /path/to/my_net.py)"
        raise ConfigError(
            f"{origin} names {name}, which is neither a file {nested} in {Path.cwd()} nor a module Python can import: "
            f"{hint}, or put its folder on PYTHONPATH"
        ) from err


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
    taken = _module_origin(module_name)
    if taken is not None and Path(taken).resolve() != path:
        raise ConfigError(f"{origin} names {name}, whose name would hide the module {module_name} ({taken}): rename it")
    if (known := sys.modules.get(module_name)) is not None:
        return known
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # as import does: a module that imports itself, Hydra's _target_, pickle
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _module_origin(module_name: str) -> str | None:
    """Where the module of that name is: the one imported, else the one import would find (None: nowhere)."""
    try:
        spec = importlib.util.find_spec(module_name)
    except ValueError:  # imported, without a spec
        return "imported already"
    except ImportError:
        return None
    return None if spec is None else spec.origin or "a package"


def _place(err: BaseException) -> str:
    """Where the user's module failed: the file and line (a syntax error's own, else the traceback's last)."""
    if isinstance(err, SyntaxError):
        return f"{err.filename}:{err.lineno}"
    last = traceback.extract_tb(err.__traceback__)[-1]
    return f"{last.filename}:{last.lineno}"
