"""Training throughput: mixsep's pipeline and defaults vs the usual per-item pipeline, side by side.

    python benchmarks/throughput.py --model conv_dual          # MIXSEP_DATA_ROOT must hold the data

(a) mixsep: batches gathered from in-memory uint8 tensors, mix computed on the batch, mixsep's
    defaults for the device (precision=auto: bf16 autocast where the device computes bf16 natively, a GPU or
    a CPU with AVX512-BF16/AMX, else fp32; channels_last; CPU: the data config's batch of 256, GPU: 512).
(b) per-item: a Dataset whose __getitem__ builds PIL images and runs torchvision transforms (Resize,
    ToTensor, channel repeat, averaging), DataLoader(batch_size=64, shuffle=True, num_workers=2), fp32.

The two are measured in alternating rounds in one process; the medians are compared. The last line is
``speedup_vs_per_item_pipeline=<float>``, the line before it ``data_speedup=<float>``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import resource
import statistics
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from per_item import PerItemPairDataset  # noqa: E402
from torch.utils.data import DataLoader
from torchvision.datasets import MNIST

from mixsep.conf import CONF_DIR
from mixsep.data.datamodule import MixDataModule
from mixsep.models import ConvDual, ConvSkipDual, ResNetDual, ResNetSkipDual, ResNetSkipSub, SingleSub, UNetSeparator
from mixsep.models.module import SeparationModule
from mixsep.training.hardware import cpu_has_bf16

NETS = {  # the model= options' networks (with their default options)
    "conv_dual": ConvSkipDual,
    "resnet_dual": ResNetSkipDual,
    "single_sub": ResNetSkipSub,
    "conv_dual_bottleneck": ConvDual,
    "resnet_dual_bottleneck": ResNetDual,
    "single_sub_bottleneck": SingleSub,
    "unet": UNetSeparator,
    "best_gpu_unet": functools.partial(UNetSeparator, width=64, depth=3),  # experiment=best_gpu's net
}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Pipeline:
    """An endless stream of float (mix, mnist, cifar) batches on the device, plus its training setup."""

    def __init__(
        self, name: str, batches, batch_size: int, bf16: bool, channels_last: bool, device: torch.device, model: str
    ) -> None:
        self.name, self.batch_size, self.bf16, self.device = name, batch_size, bf16, device
        self._batches = batches
        torch.manual_seed(0)
        self.module = SeparationModule(NETS[model](), channels_last=channels_last).to(device)
        self.opt = torch.optim.Adam(self.module.parameters(), lr=1e-3)
        self.it = iter(self._batches())

    def next_batch(self):
        try:
            return next(self.it)
        except StopIteration:
            self.it = iter(self._batches())
            return next(self.it)

    def autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def train_steps(self, n_steps: int) -> tuple[float, float]:
        """(pairs/s, share of step time spent waiting for data)."""
        wait = 0.0
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        for _ in range(n_steps):
            t0 = time.perf_counter()
            batch = self.next_batch()
            sync()
            wait += time.perf_counter() - t0
            with self.autocast():
                loss, _, _ = self.module.loss_and_outputs(batch)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        sync()
        total = time.perf_counter() - start
        return n_steps * self.batch_size / total, wait / total

    def data_only(self, n_batches: int) -> float:
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        start = time.perf_counter()
        for _ in range(n_batches):
            self.next_batch()
        sync()
        return n_batches * self.batch_size / (time.perf_counter() - start)


def build(args, per_item_batch: int = 64, **data_kwargs) -> tuple[Pipeline, Pipeline]:
    """The two pipelines on the same data and device; ``data_kwargs`` go to the MixDataModule."""
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    default_batch = OmegaConf.load(Path(CONF_DIR) / "data" / "default.yaml").batch_size
    batch = args.batch_size or (512 if device.type == "cuda" else default_batch)
    dm = MixDataModule(batch_size=batch, num_workers=0, **data_kwargs)
    dm.setup("fit")

    def fast_batches():
        for mnist_u8, cifar_u8 in dm.train_dataloader():
            yield dm.make_batch(mnist_u8.to(device, non_blocking=True), cifar_u8.to(device, non_blocking=True))

    mnist_28 = MNIST(str(dm.root), train=True).data  # per-item pipelines resize in __getitem__
    pairs = torch.stack(
        [dm.mnist_train_ids, dm.cifar_train_ids[torch.randint(len(dm.cifar_train_ids), (len(dm.mnist_train_ids),))]], 1
    )
    per_item = DataLoader(
        PerItemPairDataset(mnist_28, dm.splits.color_train, pairs),
        batch_size=per_item_batch,
        shuffle=True,
        num_workers=2,
        persistent_workers=True,
        pin_memory=device.type == "cuda",
    )

    def slow_batches():
        for b in per_item:
            yield tuple(t.to(device, non_blocking=True) for t in b)

    bf16 = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_bf16()  # as precision=auto
    fast = Pipeline("mixsep", fast_batches, batch, bf16=bf16, channels_last=True, device=device, model=args.model)
    slow = Pipeline(
        "per-item", slow_batches, per_item_batch, bf16=False, channels_last=False, device=device, model=args.model
    )
    return fast, slow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="conv_dual", choices=sorted(NETS))
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each pipeline")
    parser.add_argument("--pairs", type=int, default=6000, help="training pairs per round and pipeline")
    parser.add_argument("--data-pairs", type=int, default=20000, help="pairs per data-only measurement")
    parser.add_argument("--batch-size", type=int, default=None, help="mixsep batch (default: conf/data, 512 on GPU)")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even where a GPU is present")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each pipeline first")
    args = parser.parse_args()

    rss_before = peak_rss_mib()
    fast, slow = build(args)
    rss_data = peak_rss_mib()
    print(f"device: {fast.device}  torch {torch.__version__}  threads {torch.get_num_threads()}  model {args.model}")
    for p in (fast, slow):  # warm-up: allocator, oneDNN/cuDNN kernels, worker start
        p.train_steps(args.warmup)

    train = {p.name: [] for p in (fast, slow)}
    wait = []
    data = {p.name: [] for p in (fast, slow)}
    for r in range(args.rounds):
        for p in (fast, slow):
            rate, waited = p.train_steps(max(1, args.pairs // p.batch_size))
            train[p.name].append(rate)
            if p is fast:
                wait.append(waited)
            data[p.name].append(p.data_only(max(1, args.data_pairs // p.batch_size)))
        print(
            f"round {r + 1}: train mixsep {train['mixsep'][-1]:.0f} / per-item {train['per-item'][-1]:.0f} pairs/s;"
            f" data mixsep {data['mixsep'][-1]:.0f} / per-item {data['per-item'][-1]:.0f} pairs/s",
            flush=True,
        )

    med = {k: statistics.median(v) for k, v in train.items()}
    dmed = {k: statistics.median(v) for k, v in data.items()}
    print()
    print("| pipeline | batch | precision | train pairs/s | data-only pairs/s |")
    print("|---|---:|---|---:|---:|")
    print(
        f"| mixsep (tensor gathers) | {fast.batch_size} | {'bf16-mixed' if fast.bf16 else 'fp32'}, channels_last "
        f"| {med['mixsep']:.0f} | {dmed['mixsep']:.0f} |"
    )
    print(f"| per-item Dataset + DataLoader(workers=2) | 64 | fp32 | {med['per-item']:.0f} | {dmed['per-item']:.0f} |")
    print(f"waiting for data (mixsep): {100 * statistics.median(wait):.2f}% of step time")
    print(
        f"resident memory: {rss_data - rss_before:.0f} MiB for the decoded data set; peak RSS {peak_rss_mib():.0f} MiB"
    )
    print(f"data_speedup={dmed['mixsep'] / dmed['per-item']:.2f}")
    print(f"speedup_vs_per_item_pipeline={med['mixsep'] / med['per-item']:.2f}")


if __name__ == "__main__":
    main()
