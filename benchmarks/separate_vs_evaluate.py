"""How far the command line (8-bit PNG in, 8-bit PNG out) is from ``mixsep.evaluate`` (float pairs).

    python benchmarks/separate_vs_evaluate.py --pairs 1000 [--ckpt results/best_cpu/model.ckpt]

Exports the first N fixed test pairs with ``mixsep.mix``, separates the mean-image PNGs with
``mixsep.separate``, scores the written PNGs against the exported truths, and prints them beside
``mixsep.evaluate`` on the same N pairs, with the difference.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from mixsep import mix, separate
from mixsep.conf import CONF_DIR
from mixsep.evaluate import evaluate
from mixsep.models.metrics import image_metrics

ROOT = Path(__file__).resolve().parents[1]


def load(path: Path) -> torch.Tensor:
    with Image.open(path) as img:
        return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--ckpt", default=str(ROOT / "results" / "best_cpu" / "model.ckpt"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mix.main(["--test-pairs", str(args.pairs), "-o", str(tmp / "pairs")])
        separate.main([str(tmp / "pairs" / "mix"), "--ckpt", args.ckpt, "--out", str(tmp / "sep")])
        cli = {}
        for source, truth, name in (("gray", "gray", "mnist"), ("color", "color", "cifar")):
            metric = image_metrics()
            for path in sorted((tmp / "pairs" / truth).iterdir()):
                metric.update(load(tmp / "sep" / f"{path.stem}.{source}.png")[None], load(path)[None])
            cli.update({f"test/{name}_{k}": float(v) for k, v in metric.compute().items()})
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(
                config_name="evaluate",
                overrides=[
                    f"ckpt_path={args.ckpt}",
                    f"data.test_pairs={args.pairs}",
                    "trainer.accelerator=cpu",
                    "trainer.precision=32-true",
                ],
            )
        cfg.paths.output_dir = str(tmp / "eval")
        reference = evaluate(cfg)
    print(f"\n{'score':18s} {'separate (PNG)':>15s} {'evaluate':>10s} {'difference':>11s}")
    for key in sorted(cli):
        print(f"{key:18s} {cli[key]:15.4f} {reference[key]:10.4f} {cli[key] - reference[key]:+11.4f}")


if __name__ == "__main__":
    main()
