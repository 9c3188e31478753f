"""Translation test-time augmentation (``mixsep.evaluate tta_shift=true``) and the resize-range projection applied
after the fact, against plain inference of one checkpoint, paired on the same pairs: the mean PSNR of both sources
per pair, each variant's paired difference to plain inference with a 95 % bootstrap interval, and its time.
Selects on validation pairs (``--split val``, the default). The range projection needs a gray, mixture-consistent
model (the U-Net; the families with ``model.net.resize_range`` do it inside the network).

    python benchmarks/tta_shift.py --ckpt results/best_cpu/model.ckpt --pairs 1000
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from mixsep.data.datamodule import MixDataModule
from mixsep.models.metrics import per_image_scores
from mixsep.models.separator import load_module
from mixsep.models.structure import constrain, feasible_gray_bounds, resize_projector
from mixsep.models.tta import ShiftEnsemble
from mixsep.report.stats import bootstrap_mean, paired_difference


class RangeAfter(torch.nn.Module):
    """A gray, mixture-consistent separator's MNIST estimate projected onto the 28→32 resize's range (alternated
    with the feasible interval); CIFAR = 2·mix − MNIST."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.projector = net, resize_projector()

    def forward(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mnist, _ = self.net(mix)
        lo, hi = feasible_gray_bounds(mix)
        gray = constrain(mnist[:, :1].float(), lo, hi, True, self.projector).expand(-1, 3, -1, -1)
        return gray, 2 * mix - gray


def pair_psnrs(net: torch.nn.Module, batches) -> torch.Tensor:
    scores = []
    with torch.no_grad():
        for mix, mnist, cifar in batches:
            gray_hat, color_hat = (o.float().clamp(0, 1) for o in net(mix))
            scores.append((per_image_scores(gray_hat, mnist)["psnr"] + per_image_scores(color_hat, cifar)["psnr"]) / 2)
    return torch.cat(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--data-root", default=os.environ.get("MIXSEP_DATA_ROOT", "./data"))
    parser.add_argument("--variants", default="shift TTA,range,shift+range", help="besides plain, comma-separated")
    args = parser.parse_args()
    module = load_module(args.ckpt).eval()
    data = MixDataModule(root=args.data_root, val_pairs=args.pairs, test_pairs=args.pairs, eval_batch_size=500)
    data.setup("fit" if args.split == "val" else "test")
    loader = data.val_dataloader() if args.split == "val" else data.test_dataloader()
    batches = [data.make_batch(*b) for b in loader]  # uint8 (mnist, cifar) -> float (mix, mnist, cifar)
    timings = {}
    scores = {}
    variants = {
        "plain": module.net,
        "shift TTA": ShiftEnsemble(module.net),
        "range": RangeAfter(module.net),
        "shift+range": RangeAfter(ShiftEnsemble(module.net)),
    }
    chosen = ["plain"] + [v.strip() for v in args.variants.split(",") if v.strip()]
    variants = {name: net for name, net in variants.items() if name in chosen}
    for name, net in variants.items():
        start = time.perf_counter()
        scores[name] = pair_psnrs(net, batches).numpy()
        timings[name] = time.perf_counter() - start
    for name, values in scores.items():
        mean, lo, hi = bootstrap_mean(values)
        print(
            f"{name:10s} {args.split} PSNR {mean:.3f} [{lo:.3f}, {hi:.3f}] dB over {len(values)} pairs, "
            f"{timings[name]:.1f} s"
        )
    for name in list(variants)[1:]:
        diff = paired_difference(scores[name], scores["plain"])
        print(
            f"{name} - plain: {diff[0]:+.3f} [{diff[1]:+.3f}, {diff[2]:+.3f}] dB (paired, 95 %), "
            f"{timings[name] / timings['plain']:.1f}x the time"
        )


if __name__ == "__main__":
    main()
