"""A mixsep Hydra app (``@hydra_app("config")`` in place of ``@hydra.main``): its command line read as Hydra reads
it (flags mixed among the overrides), and what Hydra refuses with a screen of text said in one ``mixsep:`` line
(an option no config group has, an override Hydra cannot parse, a key the config does not have, a launcher,
sweeper or logger whose extra is not installed). Hydra composes the config once; its values are checked inside
the task (training/checks.py)."""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import importlib.resources
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from mixsep.adapters import hydra_arguments
from mixsep.conf import CONF_DIR
from mixsep.errors import user_error
from mixsep.training.config import user_config_dir


def in_hydras_order(argv: list[str], overrides: list[str]) -> list[str]:
    """``argv`` with its flags first and its ``overrides`` after them, as Hydra's parser needs them: ``model=unet
    -m seed=0,1`` means what ``-m model=unet seed=0,1`` means."""
    flags, given = [], 0
    for token in argv:
        if given < len(overrides) and token == overrides[given]:
            given += 1
        else:
            flags.append(token)
    return flags + overrides


@dataclass
class CommandLine:
    overrides: list[str]
    config_dirs: list[Path]  # the search path's folders, the package's first

    def groups(self) -> set[str]:
        """Every config group on the search path (``model``, ``data/gray``, ``hydra/launcher``, a user's own)."""
        return {str(d.relative_to(root)) for root in self.config_dirs for d in root.rglob("*") if d.is_dir()} - {"."}

    def options(self, group: str) -> list[str]:
        """The options of a config group, from every folder of the search path, in its subfolders too."""
        return sorted(
            str(p.relative_to(root / group).with_suffix(""))
            for root in self.config_dirs
            if (root / group).is_dir()
            for p in (root / group).rglob("*.yaml")
        )

    def option_file(self, group: str, option: str) -> Path | None:
        files = (root / group / f"{option}.yaml" for root in self.config_dirs)
        return next((path for path in files if path.is_file()), None)


def read_command_line(argv: list[str]) -> CommandLine:
    args = hydra_arguments(argv)
    overrides = list(args.overrides or [])
    primary = Path(args.config_path).resolve() if args.config_path and os.path.isabs(args.config_path) else None
    dirs = [primary or Path(CONF_DIR)]
    if args.config_dir is not None:
        extra = Path(args.config_dir).resolve()
        if not extra.is_dir():
            sys.exit(f"mixsep: --config-dir {args.config_dir} is not a folder: give the folder that holds your configs")
        dirs.append(extra)
    if user_config_dir().is_dir():
        dirs.append(user_config_dir())
    dirs += _searchpath_dirs(overrides)
    return CommandLine(overrides, dirs)


def _searchpath_dirs(overrides: list[str]) -> list[Path]:
    """The folders of a ``hydra.searchpath=[file://DIR, pkg://package]`` override."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    for arg in overrides:
        if not arg.partition("=")[0].lstrip("+~").startswith("hydra.searchpath"):
            continue
        try:
            (override,) = OverridesParser.create().parse_overrides([arg])
        except OverrideParseException as err:
            sys.exit(f"mixsep: {arg} is not an override Hydra can read: {str(err).strip().splitlines()[0]}")
        found = []
        for entry in override.value() or []:
            scheme, _, where = str(entry).rpartition("://")
            if scheme == "pkg":
                try:
                    found.append(Path(str(importlib.resources.files(where.replace("/", ".")))))
                except ModuleNotFoundError:
                    sys.exit(f"mixsep: hydra.searchpath names pkg://{where}, which Python cannot import")
            else:
                folder = Path(where).resolve()
                if not folder.is_dir():
                    sys.exit(f"mixsep: hydra.searchpath names {entry}, which is not a folder")
                found.append(folder)
        return found
    return []


def hydra_app(config_name: str) -> Callable:
    """``@hydra_app("config")``: ``hydra.main`` on the package's configs, with the command line read as Hydra reads
    it (flags before overrides), a launcher, sweeper or logger whose extra is missing named before Hydra runs, and
    Hydra's refusals in one ``mixsep:`` line (status 1, no traceback)."""

    def decorate(task: Callable) -> Callable:
        import hydra

        main = hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)(task)

        @functools.wraps(task)
        def app(cfg=None):
            if cfg is not None:  # Hydra's pass-through: the task called with a composed config
                return main(cfg)
            argv = sys.argv[1:]
            line = read_command_line(argv)
            _refuse_linked_outputs(line.overrides)
            _check_extras(line)
            sys.argv[1:] = in_hydras_order(argv, line.overrides)
            with hydras_errors_in_one_line(line):
                return main()

        return app

    return decorate


def _refuse_linked_outputs(overrides: list[str]) -> None:
    """Runs go under ``./outputs`` unless the command line names their folder. In a folder from elsewhere an
    ``outputs`` that is a symbolic link would send them anywhere: refused before Hydra writes a file."""
    if any(o.lstrip("+").startswith(("hydra.run.dir=", "hydra.sweep.dir=")) for o in overrides):
        return
    outputs = Path("outputs")
    if outputs.is_symlink():
        sys.exit(
            f"mixsep: outputs in the folder this command starts in is a symbolic link (to {os.readlink(outputs)}), "
            "where runs would be written: remove it, or name the run folder (hydra.run.dir=PATH, "
            "hydra.sweep.dir=PATH with -m)"
        )


@contextlib.contextmanager
def hydras_errors_in_one_line(line: CommandLine) -> Iterator[None]:
    """What Hydra refuses (raised to here: HYDRA_FULL_ERROR, while the app runs) as one ``mixsep:`` line; an error
    that is no user's mistake keeps its traceback."""
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    except Exception as err:
        message = refusal(err, line)
        if message is None:
            raise
        sys.exit(f"mixsep: {message}")
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)
        if previous is not None:
            os.environ["HYDRA_FULL_ERROR"] = previous


TARGET_EXAMPLES = {"pruner": "optuna.pruners.MedianPruner", "sampler": "optuna.samplers.TPESampler"}


def refusal(err: BaseException, line: CommandLine | None) -> str | None:
    """The one line that says what to fix for an error Hydra raised, or None (a bug: its traceback stays)."""
    from hydra.errors import (
        ConfigCompositionException,
        InstantiationException,
        MissingConfigException,
        OverrideParseException,
        SearchPathException,
    )

    from mixsep.training.checks import trainer_keys

    fixable = user_error(err)
    if fixable is not None:
        return str(fixable)
    if isinstance(err, OverrideParseException):
        return f"{err.override} is not an override Hydra can read: {err.message.splitlines()[0]}"
    if isinstance(err, MissingConfigException) and err.options is not None:
        group, _, option = str(err.missing_cfg_file).rpartition("/")
        options = set(err.options) | set(line.options(group) if line else [])
        known = ", ".join(sorted(o for o in options if not o.rpartition("/")[2].startswith("_")))
        return f"{group}={option} is not an option of {group}: choose one of {known}"
    if isinstance(err, InstantiationException):
        located = re.match(r"Error locating target '([^']*)'.*\nfull_key: ([\w.]+)", str(err), re.S)
        if located:
            target, key = located[1], f"{located[2]}._target_"
            example = TARGET_EXAMPLES.get(located[2].rpartition(".")[2], "package.module.ClassName")
            return (
                f"{key}={target} is no class or function Python can import: give its dotted path, e.g. {example} "
                "(a module of your own: name it in extensions=[...] or MIXSEP_EXTENSIONS)"
            )
    run_dirs = [a.partition("=")[2] for a in line.overrides if a.startswith("hydra.run.dir=")] if line else []
    if isinstance(err, (FileExistsError, NotADirectoryError)) and err.filename in run_dirs:
        return f"hydra.run.dir={err.filename} is a file, not a folder: choose a folder for the run"
    if isinstance(err, (ConfigCompositionException, MissingConfigException, SearchPathException)):
        key = re.match(r"Could not override '(\w+)'", str(err))
        if key and key[1] in trainer_keys():  # e.g. evaluate's accelerator= before 2026-11
            return f"{key[1]} is not a key of this command: it is a trainer setting, trainer.{key[1]}=..."
        said = [str(err)] + ([str(err.__cause__)] if err.__cause__ is not None else [])
        lines = [text.strip() for text in "\n".join(said).splitlines() if text.strip()]
        return "; ".join(lines[:3])
    return None


def _check_extras(line: CommandLine) -> None:
    """A launcher, sweeper or logger chosen on the command line (directly, or by a preset that overrides it)
    whose Python package is not installed: one line naming the extra that brings it. Importing the chosen
    plugin here costs nothing: Hydra imports the same module moments later."""
    groups, seen = line.groups(), set()
    chosen = [(key.lstrip("+~"), option) for key, _, option in (a.partition("=") for a in line.overrides)]
    pending = [(group, option) for group, option in chosen if group in groups]
    while pending:
        group, option = pending.pop()
        path = line.option_file(group, option)  # None for a sweep (a,b), null, or no option of that name
        if (group, option) in seen or path is None:
            continue
        seen.add((group, option))
        config = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        for entry in (config.pop("defaults", None) or []) if isinstance(config, dict) else []:
            if isinstance(entry, dict):  # "override /hydra/sweeper: optuna" and plain "group: option" entries
                for name, choice in entry.items():
                    name = name.removeprefix("override ").strip().lstrip("/")
                    if name not in groups:  # relative to the group's parent
                        name = f"{group.rpartition('/')[0]}/{name}".lstrip("/")
                    pending.append((name, str(choice)))
        for target in _targets(config):
            module, _, name = target.rpartition(".")
            if not module:
                continue  # a registered network's bare name (models/registry.py): nothing to import
            if importlib.util.find_spec(module.split(".")[0]) is None and "mixsep[" not in install_hint(module):
                continue  # a user's own module (an extension: the task imports it because it is named), not an extra
            try:  # a plugin module of mixsep's whose engine is missing says which (MISSING_MODULE), a class too
                imported = importlib.import_module(module)
                required = getattr(getattr(imported, name, None), "REQUIRES", None)
                missing = getattr(imported, "MISSING_MODULE", None) or (
                    required if required and importlib.util.find_spec(required) is None else None
                )
            except ModuleNotFoundError as err:
                missing = err.name or module
            if missing:
                sys.exit(
                    f"mixsep: {group}={option} needs {_distribution(missing)}, which is not installed: "
                    f"{install_hint(missing)}"
                )


def _targets(node) -> list[str]:
    if isinstance(node, dict):
        found = [str(node["_target_"])] if isinstance(node.get("_target_"), str) else []
        return found + [t for value in node.values() for t in _targets(value)]
    if isinstance(node, list):
        return [t for value in node for t in _targets(value)]
    return []


def _distribution(module: str) -> str:
    parts = module.split(".")
    name = parts[1] if parts[0] == "hydra_plugins" and len(parts) > 1 else parts[0]
    return name.replace("_", "-")


def install_hint(module: str) -> str:
    """``pip install "mixsep[extra]"`` for the extra of mixsep's that brings ``module``'s distribution (from the
    installed mixsep's own metadata), else ``pip install <distribution>``."""
    wanted = _distribution(module).lower()
    try:
        requirements = importlib.metadata.requires("mixsep") or []
    except importlib.metadata.PackageNotFoundError:
        requirements = []
    for requirement in requirements:
        name = re.split(r"[\s\[<>=!~;(]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        extra = re.search(r"extra\s*==\s*['\"]([\w-]+)['\"]", requirement)
        if name == wanted and extra and extra[1] != "dev":
            return f'pip install "mixsep[{extra[1]}]"'
    return f"pip install {wanted}"
