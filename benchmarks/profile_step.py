"""Where one training step's time goes, on the CPU this runs on (named, with AMX / AVX512-BF16 / neither).

    python benchmarks/profile_step.py                       # best_cpu's U-Net, batch 32, compiled
    python benchmarks/profile_step.py --experiment fast_cpu --rounds 100

Side by side in one run, the step as the recipe builds it in fp32 and in bf16 (where the CPU computes bf16), and
"bf16, before": the bf16 step as it was before the speed work (not compiled, oneDNN's transposed convolutions for the
U-Net's up-sampling). For each:
- the step (forward, loss, backward, optimizer) without Lightning: steps/s and GFLOP/s (FLOPs counted by
  torch.utils.flop_counter on the real step);
- its convolutions alone: every Conv2d of the network at the shape it sees in the step, forward + backward in the
  same precision and memory format: their GFLOP/s, the ceiling the step is measured against;
- torch.profiler's self time of the step by kind: convolutions, norms and activations, dtype casts, the optimizer,
  kernels fused by torch.compile, the rest;
- the same step under Lightning's Trainer (from in-memory batches): its overhead;
- the data: a training batch made by mixsep's data module (MIXSEP_DATA_ROOT), per step.
The steps and the convolutions alone are timed with the arms in turn, one step each, for ``--rounds`` rounds, and the
medians shown: a shared machine's speed drifts by 15 % from second to second, alike for arms timed in alternation.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import statistics
import time
import warnings
from collections import defaultdict

import torch
from hydra import compose, initialize_config_dir
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from mixsep.conf import CONF_DIR
from mixsep.models.blocks import Upsample
from mixsep.models.module import build_partial
from mixsep.training.build import build, build_module
from mixsep.training.hardware import _cpuinfo, cpu_has_bf16, describe_machine

KINDS = {  # torch.profiler's op names, by what they do (the first match wins)
    "convolutions": ("conv", "mkldnn_convolution"),
    "casts": ("aten::to", "aten::_to_copy", "aten::copy_"),
    "optimizer": ("optimizer.step", "_foreach", "adam"),
    "norms and activations": ("norm", "gelu", "relu", "silu", "sigmoid", "softmax", "tanh"),
    "kernels fused by torch.compile": ("compiledfxgraph",),
}
BEFORE = ["model.compile=false"]  # with oneDNN's transposed convolutions: the step before the speed work


def cpu_kind() -> str:
    flags = _cpuinfo()
    if "amx_bf16" in flags:
        return "AMX (and AVX512-BF16)" if "avx512_bf16" in flags else "AMX"
    return "AVX512-BF16, no AMX" if "avx512_bf16" in flags else "neither AMX nor AVX512-BF16"


def recipe(experiment: str, overrides: list[str]):
    """The composed config of ``experiment=...`` (and any further overrides), as a run composes it."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", [f"experiment={experiment}", *overrides])


def batch(size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    gray = torch.rand(size, 1, 32, 32, generator=generator).expand(-1, 3, -1, -1).contiguous()
    color = torch.rand(size, 3, 32, 32, generator=generator)
    return (gray + color) / 2, gray, color


def autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def plain_step(module, optimizer, data, bf16: bool) -> None:
    with autocast(bf16):
        loss, _ = module._predict(data)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def seconds_per_call(fn, steps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def conv_shapes(module, data) -> list[tuple[torch.nn.Conv2d, torch.Size]]:
    """Every Conv2d of the network and the input shape it sees in the step."""
    seen, hooks = [], []
    for conv in (m for m in module.modules() if isinstance(m, torch.nn.Conv2d)):
        hooks.append(conv.register_forward_hook(lambda m, inputs, _: seen.append((m, inputs[0].shape))))
    with torch.no_grad():  # the eager network: hooks do not fire inside a compiled graph
        module.net(data[0].contiguous(memory_format=torch.channels_last))
    for hook in hooks:
        hook.remove()
    return seen


def convolutions_alone(shapes, bf16: bool, channels_last: bool, steps: int, warmup: int = 2) -> tuple[float, float]:
    """(seconds, FLOPs) of every convolution of the step, forward and backward, each alone at its shape."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    total_seconds = total_flops = 0.0
    for conv, shape in shapes:
        # as the step gives it: under autocast a convolution's input is the bf16 output of the layer before
        x = torch.rand(shape, dtype=torch.bfloat16 if bf16 else torch.float32).to(memory_format=fmt).requires_grad_()

        def run(conv=conv, x=x):
            with autocast(bf16):
                out = conv(x)
            out.float().sum().backward()

        with FlopCounterMode(display=False) as counter:
            run()
        total_flops += counter.get_total_flops()
        total_seconds += seconds_per_call(run, steps, warmup)
    return total_seconds, total_flops


def time_by_kind(module, optimizer, data, bf16: bool, steps: int) -> dict[str, float]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            plain_step(module, optimizer, data, bf16)
    shares = defaultdict(float)
    for event in prof.key_averages():
        name = event.key.lower()
        kind = next((k for k, words in KINDS.items() if any(w in name for w in words)), "the rest")
        shares[kind] += event.self_cpu_time_total / 1e6 / steps
    return dict(shares)


def lightning_step(module_cfg, size: int, bf16: bool, steps: int, before: bool = False) -> float:
    """Seconds per step under Lightning's Trainer, from in-memory batches (no logger, no checkpoints)."""
    import lightning as L

    module = built(module_cfg, before)
    module.hparams.scheduler = None  # the recipe's time-based schedule needs a run's clock
    generator = torch.Generator().manual_seed(1)
    batches = [batch(size, generator) for _ in range(4)]
    loader = torch.utils.data.DataLoader(batches * (steps + 4), batch_size=None)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    trainer = L.Trainer(
        accelerator="cpu", precision="bf16-mixed" if bf16 else "32-true", max_steps=steps + 4, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        limit_val_batches=0,
    )  # fmt: skip
    timer = {}

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer, *_):
            if trainer.global_step == 4:  # after the warm-up steps
                timer["start"] = time.perf_counter()

    trainer.callbacks.append(Clock())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, loader)
    return (time.perf_counter() - timer["start"]) / steps


def data_step(data_cfg, steps: int) -> float | None:
    """Seconds per training batch made by the run's data module from MIXSEP_DATA_ROOT (None without the data)."""
    if not os.environ.get("MIXSEP_DATA_ROOT"):
        return None
    data = build(data_cfg, num_workers=0)
    data.prepare_data()
    data.setup("fit")
    batches = iter(data.train_dataloader())
    return seconds_per_call(lambda: data.on_after_batch_transfer(next(batches), 0), steps)


def built(model_cfg, before: bool = False):
    """The recipe's module; ``before``: its U-Net up-sampling through oneDNN's transposed convolution, as before the
    speed work (the same parameters and outputs)."""
    module = build_module(model_cfg)
    if before:
        for layer in module.modules():
            if isinstance(layer, Upsample):
                layer.__class__ = torch.nn.ConvTranspose2d
    return module


class Arm:
    """One column of the table: the recipe's step in one precision, ready to time."""

    def __init__(self, label: str, model_cfg, size: int, bf16: bool, before: bool) -> None:
        self.label, self.model_cfg, self.size, self.bf16, self.before = label, model_cfg, size, bf16, before
        self.module = built(model_cfg, before)
        self.channels_last = bool(self.module.hparams.get("channels_last"))
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        params = self.module.parameters()
        self.optimizer = build_partial(self.module.optimizer_config, "model.optimizer", params, lr=1e-3)
        self.data = batch(size, torch.Generator().manual_seed(0))
        self.step = functools.partial(plain_step, self.module, self.optimizer, self.data, bf16)
        self.step()  # a compiled network compiles here, not inside the FLOP count
        with FlopCounterMode(display=False) as counter:
            self.step()
        self.step_flops = counter.get_total_flops()
        self.shapes = conv_shapes(self.module, self.data)
        _, self.conv_flops = convolutions_alone(self.shapes, bf16, self.channels_last, 1)  # and warmed up
        self.step_seconds: list[float] = []
        self.conv_seconds: list[float] = []

    def time_once(self, steps: int) -> None:
        self.step_seconds.append(seconds_per_call(self.step, steps, warmup=0))
        self.conv_seconds.append(convolutions_alone(self.shapes, self.bf16, self.channels_last, steps, warmup=0)[0])

    def row(self, steps: int) -> tuple:
        kinds = time_by_kind(self.module, self.optimizer, self.data, self.bf16, max(5, steps))
        lightning = lightning_step(self.model_cfg, self.size, self.bf16, max(10, steps), self.before)
        step, convs = statistics.median(self.step_seconds), statistics.median(self.conv_seconds)
        return self.label, self.step_flops, step, self.conv_flops, convs, kinds, lightning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="best_cpu")
    parser.add_argument("--steps", type=int, default=1, help="timed steps of each arm in each round")
    parser.add_argument("--rounds", type=int, default=60, help="rounds of the arms in turn (medians are shown)")
    parser.add_argument("--precision", nargs="+", default=None, help="fp32 and/or bf16 (default: both where bf16 runs)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the run's config (model.net.width=48, ...)")
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = recipe(args.experiment, args.overrides)
    size = int(cfg.data.batch_size)
    bf16_here = cpu_has_bf16()
    arms = [(p, p == "bf16", False) for p in (args.precision or (["fp32", "bf16"] if bf16_here else ["fp32"]))]
    if bf16_here and not args.precision:
        arms.insert(1, ("bf16, before", True, True))
    print(f"machine: {describe_machine()}, {cpu_kind()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    timing = f"{args.rounds} rounds of {args.steps} timed step(s) per arm"
    print(f"step: experiment={args.experiment} (model={cfg.model.name}), batch {size}, {timing}\n")
    data_seconds = data_step(cfg.data, args.steps)
    columns = [
        Arm(label, recipe(args.experiment, [*args.overrides, *(BEFORE if before else [])]).model, size, bf16, before)
        for label, bf16, before in arms
    ]
    for _ in range(args.rounds):  # the arms in turn, each round: a busy neighbour slows all of them alike
        for column in columns:
            column.time_once(args.steps)
    rows = [column.row(args.steps) for column in columns]

    print("| | " + " | ".join(r[0] for r in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    table = {
        "step GFLOP": [f"{r[1] / 1e9:.1f}" for r in rows],
        "steps/s (no Lightning)": [f"{1 / r[2]:.2f}" for r in rows],
        "step GFLOP/s": [f"{r[1] / r[2] / 1e9:.0f}" for r in rows],
        "its convolutions alone, GFLOP/s": [f"{r[3] / r[4] / 1e9:.0f}" for r in rows],
        "step / convolutions alone": [f"{(r[1] / r[2]) / (r[3] / r[4]):.0%}" for r in rows],
        **{f"ms in {kind}": [f"{r[5].get(kind, 0) * 1e3:.1f}" for r in rows] for kind in [*KINDS, "the rest"]},
        "steps/s under Lightning": [f"{1 / r[6]:.2f}" for r in rows],
        "Lightning's overhead": [f"{r[6] / r[2] - 1:+.0%}" for r in rows],
        "ms making the batch (data module)": [
            "-" if data_seconds is None else f"{data_seconds * 1e3:.1f}" for _ in rows
        ],
    }
    for name, cells in table.items():
        print(f"| {name} | " + " | ".join(cells) + " |")
    if data_seconds is None:
        print("\n(the data row needs MIXSEP_DATA_ROOT: the real MNIST + CIFAR-10)")


if __name__ == "__main__":
    main()
