"""Does training on the JPEG (quality 75, 4:2:0) CIFAR-10 training images cost anything on the lossless test
images? The shipped model scored on the fixed test pairs twice: as they are, and with each CIFAR image re-encoded
as the training images were (the mix made from the re-encoded image, which is also the target). A model that had
learnt JPEG's statistics would score clearly higher on the re-encoded pairs; the paired difference says how much.

    python benchmarks/jpeg_gap.py --pairs 10000            # the shipped model (mixsep/pretrained)
    python benchmarks/jpeg_gap.py --model results/best_cpu --pairs 2000
"""

from __future__ import annotations

import argparse
import io
import os

import numpy as np
import torch
from PIL import Image

from mixsep import load_separator
from mixsep.data.datamodule import MixDataModule, to_float_batch
from mixsep.models.metrics import per_image_scores
from mixsep.report.stats import bootstrap_mean, paired_difference


def jpeg_again(color_u8: torch.Tensor, quality: int = 75) -> torch.Tensor:
    """(B, 3, 32, 32) uint8 images through PIL's JPEG encoder and decoder, 4:2:0 as the training images were."""
    images = []
    for image in color_u8.permute(0, 2, 3, 1).numpy():
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling="4:2:0")
        images.append(np.asarray(Image.open(buffer).convert("RGB")))
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def per_pair_psnr(separate, gray_u8: torch.Tensor, color_u8: torch.Tensor) -> dict[str, torch.Tensor]:
    mix, mnist, cifar = to_float_batch(gray_u8, color_u8)
    with torch.no_grad():
        mnist_hat, cifar_hat = separate(mix)
    # the separator clamps its estimates into [0, 1]; the scores use data range 1, as every mixsep score does
    return {"mnist": per_image_scores(mnist_hat, mnist)["psnr"], "cifar": per_image_scores(cifar_hat, cifar)["psnr"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a bundle folder or checkpoint (default: the shipped model)")
    parser.add_argument("--pairs", type=int, default=10000)
    parser.add_argument("--data-root", default=os.environ.get("MIXSEP_DATA_ROOT", "./data"))
    args = parser.parse_args()
    separate = load_separator(args.model) if args.model else load_separator()
    data = MixDataModule(root=args.data_root, test_pairs=args.pairs, eval_batch_size=500, download=False)
    data.setup("test")
    scores: dict[str, dict[str, list[torch.Tensor]]] = {"lossless": {}, "jpeg q75": {}}
    for gray_u8, color_u8 in data.test_dataloader():
        for name, color in (("lossless", color_u8), ("jpeg q75", jpeg_again(color_u8))):
            for source, values in per_pair_psnr(separate, gray_u8, color).items():
                scores[name].setdefault(source, []).append(values)
    pairs = {name: {s: torch.cat(v).double().numpy() for s, v in by.items()} for name, by in scores.items()}
    for name, by in pairs.items():
        cells = ["{} {:.3f} [{:.3f}, {:.3f}]".format(s, *bootstrap_mean(v)) for s, v in by.items()]
        print(f"{name:9s} test PSNR over {len(by['mnist'])} pairs (dB, 95 %): " + "; ".join(cells))
    for source in ("mnist", "cifar"):
        mean, lo, hi = paired_difference(pairs["jpeg q75"][source], pairs["lossless"][source])
        print(f"jpeg q75 - lossless, {source}: {mean:+.3f} [{lo:+.3f}, {hi:+.3f}] dB (paired, 95 %)")


if __name__ == "__main__":
    main()
