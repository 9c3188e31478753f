"""The command line of a mixsep Hydra app, read as Hydra reads it: its flags (``--cfg``, ``--config-dir``, ``-m``,
...), its overrides, and the config search path they make (the package's ``conf/``, the per-user folder, a
``--config-dir``, ``hydra.searchpath``). What Hydra would refuse with a screen of text is refused here in one
``mixsep:`` line: an option no config group has, an override Hydra cannot parse, a key the config does not have, a
launcher, sweeper or logger whose extra is not installed."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from mixsep.adapters import apply_overrides, hydra_arguments
from mixsep.errors import ConfigError
from mixsep.training.config import CONF_DIR, user_config_dir

# flags after which Hydra prints something and runs no job: the config, help, version, information
SHOWS_ONLY = ("cfg", "help", "hydra_help", "info", "shell_completion")  # --version: argparse prints, exits


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
    config_name: str
    config_dirs: list[Path]  # the search path's folders, the package's first
    shows_only: bool  # --cfg, --help, --info, ...: Hydra prints and exits
    multirun: bool

    def groups(self) -> set[str]:
        """Every config group on the search path (``model``, ``data/gray``, ``hydra/launcher``, a user's own)."""
        return {str(d.relative_to(root)) for root in self.config_dirs for d in root.rglob("*") if d.is_dir()} - {"."}

    def options(self, group: str) -> list[str]:
        """The options of a config group, from every folder of the search path."""
        return sorted(
            {
                str(p.relative_to(root / group).with_suffix(""))
                for root in self.config_dirs
                if (root / group).is_dir()
                for p in (root / group).rglob("*.yaml")
                if not p.name.startswith("_")
            }
        )

    def option_file(self, group: str, option: str) -> Path | None:
        files = (root / group / f"{option}.yaml" for root in self.config_dirs)
        return next((path for path in files if path.is_file()), None)


def read_command_line(argv: list[str], config_name: str) -> CommandLine:
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
    return CommandLine(
        overrides=overrides,
        config_name=args.config_name or config_name,
        config_dirs=dirs,
        shows_only=any(getattr(args, flag) for flag in SHOWS_ONLY),
        multirun=bool(args.multirun),
    )


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


def check_command_line(argv: list[str], config_name: str = "config") -> list[str]:
    """Refuse in one line what Hydra would refuse with a screen of text, before Hydra runs; ``argv`` as Hydra
    reads it (its flags before its overrides)."""
    line = read_command_line(argv, config_name)
    if not (line.shows_only and not line.overrides):
        _check_line(line)
    return in_hydras_order(argv, line.overrides)


def _check_line(line: CommandLine) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from mixsep.extensions import load_extensions

    named = [a for a in line.overrides if a.partition("=")[0].lstrip("+~") == "extensions"]
    try:  # a network, source or score of one's own named below is known once its module is imported
        values = [o.value() for o in OverridesParser.create().parse_overrides(named)] if named else []
        load_extensions([str(n) for value in values if isinstance(value, list) for n in value])
    except ConfigError as err:
        sys.exit(f"mixsep: {err}")
    _check_overrides(line)
    _check_extras(line)
    if line.multirun or _sweeps(line.overrides):
        return  # sweeps (-m, or a sweeper's search space): each job's config is Hydra's own
    _check_composition(line)


def _sweeps(overrides: list[str]) -> bool:
    return any("(" in a or "," in a or a.startswith("hparams_search=") for a in overrides)


def _check_composition(line: CommandLine) -> None:
    """The overrides composed as Hydra composes them: a key the config does not have, a value of the wrong kind."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from mixsep.training.checks import trainer_keys, value_kind_problem

    groups = line.groups()
    is_choice = lambda a: _is_group_choice(a, groups)
    extra_dirs = [f"file://{d}" for d in line.config_dirs[1:]]
    choices = [a for a in line.overrides if is_choice(a) and not a.startswith("hydra.searchpath")]
    if extra_dirs:
        choices.append(f"hydra.searchpath=[{','.join(extra_dirs)}]")
    try:
        with initialize_config_dir(config_dir=str(line.config_dirs[0]), version_base="1.3"):
            reference = compose(config_name=line.config_name, overrides=choices, return_hydra_config=True)
        # the other overrides applied as Hydra's compose applies them after its groups (one compose, not two:
        # each is half a second of every run's start)
        composed = reference.copy()
        values = OverridesParser.create().parse_overrides([a for a in line.overrides if not is_choice(a)])
        apply_overrides(values, composed)
    except HydraException as err:
        lines = [text.strip() for text in str(err).splitlines() if text.strip()]
        key = re.match(r"Could not override '([\w.]+)'", lines[0] if lines else "")
        if key and "." not in key[1] and key[1] in trainer_keys():  # e.g. evaluate's accelerator= before 2026-11
            sys.exit(f"mixsep: {key[1]} is not a key of this command: it is a trainer setting, trainer.{key[1]}=...")
        sys.exit(f"mixsep: {'; '.join(lines[:3])}")
    given = {a.partition("=")[0].lstrip("+~") for a in line.overrides if "=" in a and not is_choice(a)}
    problem = value_kind_problem(
        OmegaConf.to_container(composed, resolve=False), OmegaConf.to_container(reference, resolve=False), given
    )
    if problem:
        sys.exit(f"mixsep: {problem}")


def _is_group_choice(arg: str, groups: set[str]) -> bool:
    key = arg.partition("=")[0].lstrip("+~")
    return key.startswith("hydra") or key in groups


def _check_overrides(line: CommandLine) -> None:
    """Group options that do not exist (also inside a sweep's ``model=a,b``), a run folder that is a file, a
    ``_target_`` that names nothing, read with Hydra's own override parser."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    from mixsep.training.checks import check_target

    parser = OverridesParser.create()
    groups = line.groups()
    for arg in line.overrides:
        try:
            (override,) = parser.parse_overrides([arg])
        except OverrideParseException as err:
            sys.exit(f"mixsep: {arg} is not an override Hydra can read: {str(err).strip().splitlines()[0]}")
        key = override.key_or_group
        if key == "hydra.run.dir" and not override.is_sweep_override():
            value = str(override.value())
            if Path(value).exists() and not Path(value).is_dir():
                sys.exit(f"mixsep: hydra.run.dir={value} is a file, not a folder: choose a folder for the run")
        if key.endswith("._target_") and not override.is_sweep_override():
            try:
                check_target(key, str(override.value()))
            except ConfigError as err:
                sys.exit(f"mixsep: {err}")
        if key not in groups or key.startswith("hydra"):
            continue  # Hydra's own groups (hydra/launcher=basic, hydra/job_logging=...) are in Hydra's packages
        if override.is_sweep_override() and not override.is_choice_sweep():
            continue  # ranges and intervals of a sweeper's search space: Hydra's own
        options = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        known = line.options(key)
        for option in options:
            if isinstance(option, list):  # a list of options: model=[a,b] (+group=[...] appends config files)
                bad = [o for o in option if str(o) not in known]
                option = bad[0] if bad else None
            if option is not None and str(option) != "null" and str(option) not in known:
                sys.exit(f"mixsep: {key}={option} is not an option of {key}: choose one of {', '.join(known)}")


def _check_extras(line: CommandLine) -> None:
    """A launcher, sweeper or logger chosen on the command line (directly, or by a preset that overrides it)
    whose Python package is not installed: one line naming the extra that brings it. Importing the chosen
    plugin here costs nothing: Hydra imports the same module moments later."""
    groups = line.groups()
    seen: set[tuple[str, str]] = set()
    pending = [
        (a.partition("=")[0].lstrip("+~"), a.partition("=")[2])
        for a in line.overrides
        if a.partition("=")[0].lstrip("+~") in groups
    ]
    while pending:
        group, option = pending.pop()
        if (group, option) in seen or "," in option or option in ("null", ""):
            continue
        seen.add((group, option))
        path = line.option_file(group, option)
        if path is None:
            continue
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
