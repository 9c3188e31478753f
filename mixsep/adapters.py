"""The only calls into other libraries' private code, for what they offer no public API for. Each is held to the
behaviour mixsep relies on by tests/test_adapters.py, which fails naming the library and its version when an
upgrade changes it."""

from __future__ import annotations

import argparse


def hydra_arguments(argv: list[str]) -> argparse.Namespace:
    """``argv`` read by Hydra's own parser of its command line (flags, then overrides; mixed is accepted)."""
    from hydra._internal.utils import get_args_parser

    return get_args_parser().parse_intermixed_args(argv)


def submitit_warning_signal() -> int:
    """The signal submitit's jobs receive before a time limit or a pre-emption (USR2 unless
    ``SUBMITIT_PREEMPT_SIGNAL`` said otherwise when submitit was imported). ImportError without submitit."""
    from submitit import JobEnvironment

    return JobEnvironment._usr_sig()
