"""The only calls into other libraries' private code, for what they offer no public API for. Each is held to the
behaviour mixsep relies on by tests/test_adapters.py, which fails naming the library and its version when an
upgrade changes it."""

from __future__ import annotations

import argparse


def hydra_arguments(argv: list[str]) -> argparse.Namespace:
    """``argv`` read by Hydra's own parser of its command line (flags, then overrides; mixed is accepted)."""
    from hydra._internal.utils import get_args_parser

    return get_args_parser().parse_intermixed_args(argv)


def drop_wandb_init_argument(logger, name: str) -> None:
    """Leave ``name`` out of what Lightning's WandbLogger passes to ``wandb.init`` (it always passes
    ``anonymous``, as None, and wandb >= 0.19 warns about that setting on every run)."""
    logger._wandb_init.pop(name, None)


def forget_wandb_run() -> None:
    """Let go of ``wandb.run`` and its connection when W&B's service process is gone and ``wandb.finish`` raised
    before doing so, so that a later job of this process starts its own run on a new service."""
    import wandb
    from wandb.sdk.lib import module

    module.unset_globals()
    wandb.teardown()
