"""``mixsep COMMAND ...``: the installed command. Unlike ``python -m mixsep.COMMAND`` it never puts the folder it
starts in on Python's path, so running it inside a downloaded folder (a bundle, someone's run) imports nothing
from there. Each command is the module of its name, run as ``python -m`` runs it (Lightning's DDP workers and
Hydra's launchers start again from that module)."""

from __future__ import annotations

import runpy
import sys
from importlib.metadata import PackageNotFoundError, version

COMMANDS = {
    "run": "train and test a model (Hydra overrides: model=unet, experiment=..., -m for sweeps)",
    "evaluate": "score a checkpoint or a bundle on the test pairs (ckpt_path=...)",
    "separate": "separate mean images into their two sources (files or folders)",
    "export": "write a shareable bundle: safetensors weights, config, model card, ONNX",
    "report": "rank runs and sweeps, compare two runs pair by pair, draw charts",
    "mix": "make a mean image from two images, or export the fixed test pairs",
}


def installed_version() -> str:
    try:
        return version("mixsep")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed)"


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, what in COMMANDS.items()]
    return "\n".join(["usage: mixsep COMMAND [ARGS ...]   (mixsep COMMAND --help for its own)", "", *lines])


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if args else 2)
    if args[0] == "--version":
        print(f"mixsep {installed_version()}")
        return
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        sys.exit(f"mixsep: {command} is not a command: use one of {', '.join(COMMANDS)} (see mixsep --help)")
    sys.argv = [f"mixsep {command}", *rest]
    runpy.run_module(f"mixsep.{command}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
