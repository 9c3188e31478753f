"""``mixsep COMMAND ...``: the installed command. Unlike ``python -m mixsep.COMMAND`` it never puts the folder it
starts in on Python's path. Each command is the module of its name, run as ``python -m`` runs it (Lightning's DDP
workers and Hydra's launchers start again from that module)."""

from __future__ import annotations

import runpy
import sys

from mixsep import __version__

COMMANDS = {
    "run": "train and test a model (Hydra overrides: model=unet, experiment=..., -m for sweeps)",
    "evaluate": "score a checkpoint or a bundle on the test pairs (ckpt_path=...)",
    "separate": "separate mean images into their two sources (files or folders)",
    "export": "write a shareable bundle: safetensors weights, config, model card, ONNX",
    "report": "rank runs and sweeps, compare two runs pair by pair, draw charts",
    "mix": "make a mean image from two images, or export the fixed test pairs",
}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--version"]:
        print(f"mixsep {__version__}")
        return
    if args[:1] in ([], ["-h"], ["--help"]):
        width = max(map(len, COMMANDS))
        print("usage: mixsep COMMAND [ARGS ...]   (mixsep COMMAND --help for its own)\n")
        print("\n".join(f"  {name:<{width}}  {what}" for name, what in COMMANDS.items()))
        sys.exit(0 if args else 2)
    if args[0] not in COMMANDS:
        sys.exit(f"mixsep: {args[0]} is not a command: use one of {', '.join(COMMANDS)} (see mixsep --help)")
    sys.argv = [f"mixsep {args[0]}", *args[1:]]
    runpy.run_module(f"mixsep.{args[0]}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
