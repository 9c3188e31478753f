"""``@hydra_app("config")`` in place of ``@hydra.main``: Hydra reads the command line and composes the config,
once; what it refuses with a screen of text is said in one ``mixsep:`` line."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from inspect import signature
from pathlib import Path

from mixsep.adapters import hydra_arguments
from mixsep.conf import CONF_DIR
from mixsep.errors import moved_setting, one_line_errors, user_error
from mixsep.extensions import load_extensions
from mixsep.record.where import hydra_job


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


def hydra_app(config_name: str) -> Callable:
    """``@hydra_app("config")``: ``hydra.main`` on the package's configs, flags allowed among the overrides,
    Hydra's refusals in one ``mixsep:`` line (status 1, no traceback), and each job's ``extensions`` imported
    before its task runs."""

    def decorate(task: Callable) -> Callable:
        import hydra

        @functools.wraps(task)
        def with_extensions(cfg):  # called by Hydra per job (each multirun job with its own cfg)
            # a single run ends in one line; a sweep's job raises, and the sweep records it failed
            with contextlib.nullcontext() if hydra_job()["multirun"] else one_line_errors():
                load_extensions(cfg.get("extensions"))
            return task(cfg)

        main = hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)(with_extensions)

        @functools.wraps(task)
        def app(cfg=None):
            if cfg is not None:  # Hydra's pass-through: the task called with a composed config
                return main(cfg)
            overrides = hydra_arguments(sys.argv[1:]).overrides or []
            _refuse_linked_outputs(overrides)
            sys.argv[1:] = in_hydras_order(sys.argv[1:], overrides)
            with hydras_errors_in_one_line():
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
def hydras_errors_in_one_line() -> Iterator[None]:
    """What Hydra refuses (raised to here: HYDRA_FULL_ERROR, while the app runs) as one ``mixsep:`` line; an error
    that is no user's mistake keeps its traceback. Hydra only warns of a ``hydra.searchpath`` folder that is not
    there (and of the per-user folder, which need not be): the first is made an error, the second is silenced."""
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", "provider=hydra.searchpath in command-line, ", UserWarning)
            warnings.filterwarnings("ignore", "provider=mixsep-user, ", UserWarning)
            yield
    except Exception as err:
        message = refusal(err)
        if message is None:
            raise
        sys.exit(f"mixsep: {message}")
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)
        if previous is not None:
            os.environ["HYDRA_FULL_ERROR"] = previous


TARGET_EXAMPLES = {"pruner": "optuna.pruners.MedianPruner", "sampler": "optuna.samplers.TPESampler"}


def refusal(err: BaseException) -> str | None:
    """The one line that says what to fix for an error Hydra raised, or None (a bug: its traceback stays)."""
    from hydra import errors
    from lightning import Trainer

    fixable, missing = user_error(err), _not_installed(err)
    located = re.match(r"Error locating target '([^']*)'.*\nfull_key: ([\w.]+)", str(err), re.S)
    searchpath = re.match(r"provider=hydra.searchpath in command-line, path=(.*) is not available", str(err))
    if fixable is not None:
        return str(fixable)
    if missing:
        what = f"{located[2]}._target_={located[1]}" if located else missing[0]
        return f"{what} needs {_distribution(missing[1])}, which is not installed: {install_hint(missing[1])}"
    if isinstance(err, errors.OverrideParseException):
        return f"{err.override} is not an override Hydra can read: {err.message.splitlines()[0]}"
    if searchpath:  # a warning of Hydra's, made an error in hydras_errors_in_one_line
        return f"hydra.searchpath names {searchpath[1]}, which is no folder (file://DIR) or package Python imports"
    if isinstance(err, errors.MissingConfigException) and err.options is not None:
        group, _, option = str(err.missing_cfg_file).rpartition("/")
        known = ", ".join(o for o in err.options if not o.startswith("_"))
        return f"{group}={option} is not an option of {group}: choose one of {known}"
    if located:
        example = TARGET_EXAMPLES.get(located[2].rpartition(".")[2], "package.module.ClassName")
        return (
            f"{located[2]}._target_={located[1]} is no class or function Python can import: give its dotted path, "
            f"e.g. {example} (a module of your own: name it in extensions=[...] or MIXSEP_EXTENSIONS)"
        )
    if isinstance(err, (FileExistsError, NotADirectoryError)):  # Hydra making the run's folder where a file is
        return f"{err.filename} is a file, not a folder: choose a folder for the run (hydra.run.dir=PATH)"
    key = re.match(r"Could not override '(\w+)'", str(err))
    if key and key[1] in signature(Trainer).parameters:  # e.g. evaluate's accelerator=
        return f"{key[1]} is not a key of this command: it is a trainer setting, trainer.{key[1]}=..."
    unknown = re.match(r"Could not override '([\w.]+)'.*(not in struct|not in '\w+')", f"{err} {err.__cause__}", re.S)
    if unknown and unknown[1].endswith("net._target_"):
        return f"{unknown[1]} is no setting: a network is named by its registered name, {unknown[1][:-9]}.name=NAME"
    if unknown:
        hint = moved_setting(unknown[1])
        return f"{unknown[1]} is no setting of this command{hint}: check its spelling (--cfg job lists the settings)"
    merging = re.match(r"Error merging override (\S+)", str(err))
    if merging and type(err.__cause__).__name__ == "ValidationError":  # the schema's type of that key (schema.py)
        key = merging[1].partition("=")[0].lstrip("+~")
        return f"{merging[1]} does not fit {key}'s type: {str(err.__cause__).splitlines()[0]}"
    if isinstance(err, (errors.ConfigCompositionException, errors.MissingConfigException, errors.SearchPathException)):
        said = [str(err)] + ([str(err.__cause__)] if err.__cause__ is not None else [])
        return "; ".join([text.strip() for text in "\n".join(said).splitlines() if text.strip()][:3])
    return None


def _not_installed(err: BaseException) -> tuple[str, str] | None:
    """(what needs it, its module) when ``err`` says a Hydra plugin or an engine of mixsep's extras is missing: a
    config the plugin's package would register (Hydra's naming: hydra-submitit-launcher's submitit_slurm), a
    plugin class Hydra did not find, a failed import."""
    text, cause = str(err), err
    config = re.match(r"In '(.+)/(\w+)': Could not load 'hydra/(\w+)/([^_']+)", text)
    plugin_class = re.match(r"Unknown plugin class : '(hydra_plugins\.\w+)[\w.]*'", text)
    if config and getattr(err, "options", ()) is None:
        what, package = f"{config[1]}={config[2]}", f"hydra_plugins.hydra_{config[4]}_{config[3]}"
    elif plugin_class:
        what, package = text.split("'")[1], plugin_class[1]
    else:
        seen = set()  # an exception's context can lead back to itself
        while (
            cause is not None and id(cause) not in seen and not (isinstance(cause, ModuleNotFoundError) and cause.name)
        ):
            seen.add(id(cause))
            cause = cause.__cause__ or cause.__context__
        cause = cause if isinstance(cause, ModuleNotFoundError) else None
        return ("this command", cause.name) if cause and "mixsep[" in install_hint(cause.name) else None
    return (what, package) if importlib.util.find_spec(package) is None else None


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
