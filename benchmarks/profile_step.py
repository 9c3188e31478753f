"""Where one training step's time goes, on the CPU this runs on (named, with AMX / AVX512-BF16 / neither).

    python benchmarks/profile_step.py                       # best_cpu_5min's U-Net, batch 32: fp32 and bf16
    python benchmarks/profile_step.py --experiment fast_cpu --steps 20

For each precision, side by side in one run:
- the step (forward, loss, backward, optimizer) without Lightning: steps/s and GFLOP/s (FLOPs counted by
  torch.utils.flop_counter on the real step);
- its convolutions alone: every Conv2d of the network at the shape it sees in the step, forward + backward in the
  same precision and memory format: their GFLOP/s, the ceiling the step is measured against;
- torch.profiler's self time of the step by kind: convolutions, norms and activations, dtype casts, the optimizer,
  the rest;
- the same step under Lightning's Trainer (from in-memory batches): its overhead;
- the data: a training batch made by mixsep's data module (MIXSEP_DATA_ROOT), per step.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import time
import warnings
from collections import defaultdict

import torch
from hydra import compose, initialize_config_dir
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from mixsep.conf import CONF_DIR
from mixsep.training.build import build, build_module
from mixsep.training.hardware import _cpuinfo, cpu_has_bf16, describe_machine

KINDS = {  # torch.profiler's op names, by what they do (the first match wins)
    "convolutions": ("conv", "mkldnn_convolution"),
    "casts": ("aten::to", "aten::_to_copy", "aten::copy_"),
    "optimizer": ("optimizer.step", "_foreach", "adam"),
    "norms and activations": ("norm", "gelu", "relu", "silu", "sigmoid", "softmax", "tanh"),
}


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
    with torch.no_grad():
        module(data[0])
    for hook in hooks:
        hook.remove()
    return seen


def convolutions_alone(shapes, bf16: bool, channels_last: bool, steps: int) -> tuple[float, float]:
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
        total_seconds += seconds_per_call(run, steps)
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


def lightning_step(module_cfg, size: int, bf16: bool, steps: int) -> float:
    """Seconds per step under Lightning's Trainer, from in-memory batches (no logger, no checkpoints)."""
    import lightning as L

    module = build_module(module_cfg)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="best_cpu_5min")
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each measurement")
    parser.add_argument("--precision", nargs="+", default=None, help="fp32 and/or bf16 (default: both where bf16 runs)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the run's config (model.net.width=48, ...)")
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = recipe(args.experiment, args.overrides)
    model_cfg, size = cfg.model, int(cfg.data.batch_size)
    precisions = args.precision or (["fp32", "bf16"] if cpu_has_bf16() else ["fp32"])
    print(f"machine: {describe_machine()}, {cpu_kind()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"step: experiment={args.experiment} (model={model_cfg.name}), batch {size}, {args.steps} timed steps\n")
    data_seconds = data_step(cfg.data, args.steps)
    rows = []
    for precision in precisions:
        bf16 = precision == "bf16"
        module = build_module(model_cfg)
        channels_last = bool(module.hparams.get("channels_last"))
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
        data = batch(size, torch.Generator().manual_seed(0))
        with FlopCounterMode(display=False) as counter:
            plain_step(module, optimizer, data, bf16)
        step_flops = counter.get_total_flops()
        step_seconds = seconds_per_call(functools.partial(plain_step, module, optimizer, data, bf16), args.steps)
        conv_seconds, conv_flops = convolutions_alone(conv_shapes(module, data), bf16, channels_last, args.steps)
        kinds = time_by_kind(module, optimizer, data, bf16, max(2, args.steps // 2))
        lightning = lightning_step(model_cfg, size, bf16, args.steps)
        rows.append((precision, step_flops, step_seconds, conv_flops, conv_seconds, kinds, lightning))

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
