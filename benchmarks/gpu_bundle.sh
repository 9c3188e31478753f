#!/usr/bin/env bash
# Everything a GPU node without network needs to run benchmarks/gpu_check.py, in one folder (< 60 MB):
#   bash benchmarks/gpu_bundle.sh gpu_bundle        # here, with network and MIXSEP_DATA_ROOT set
#   (copy gpu_bundle/ and the repository to the node; the node has torch, lightning and torchmetrics)
#   pip install --no-index --find-links gpu_bundle/wheels -r gpu_bundle/requirements.txt
#   python benchmarks/gpu_check.py --data gpu_bundle/data
# wheels/: what mixsep imports beyond torch, lightning and torchmetrics, for CPython 3.12 on manylinux
# x86_64; data/: a real-format subset of MNIST (idx) and CIFAR-10 (ImageFolder): 10,000 training images
# of each, 2,000 test images of each.
set -euo pipefail
[[ $# -eq 1 ]] || { echo "mixsep: usage: bash benchmarks/gpu_bundle.sh DIR" >&2; exit 2; }
out=$1
cd "$(dirname "$0")/.."
root=${MIXSEP_DATA_ROOT:-}
[[ -d "$root/MNIST/raw" ]] || { echo "mixsep: set MIXSEP_DATA_ROOT to the real MNIST + CIFAR-10 (e.g. ../shared/data)" >&2; exit 2; }
mkdir -p "$out/wheels" "$out/data"
# torchvision 0.26 is the release built against torch 2.11 (the GPU node's torch)
cat >"$out/requirements.txt" <<'REQ'
torchvision==0.26.0
pillow
hydra-core==1.3.2
omegaconf==2.3.0
antlr4-python3-runtime==4.9.3
rich
markdown-it-py
mdurl
pygments
platformdirs
matplotlib
contourpy
cycler
fonttools
kiwisolver
pyparsing
python-dateutil
six
pytest
pluggy
iniconfig
REQ
grep -v antlr4 "$out/requirements.txt" | xargs pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --abi cp312 --abi abi3 --abi none --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d "$out/wheels"
pip wheel -q --no-deps antlr4-python3-runtime==4.9.3 -w "$out/wheels"   # published as source only
python - "$root" "$out/data" <<'PY'
import shutil, struct, sys
from pathlib import Path

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
raw = dst / "MNIST" / "raw"
raw.mkdir(parents=True, exist_ok=True)
for prefix, n in (("train", 10000), ("t10k", 2000)):
    images = (src / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte").read_bytes()
    labels = (src / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte").read_bytes()
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images[16 : 16 + n * 784])
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels[8 : 8 + n])
for split, per_class in (("train", 1000), ("test", 200)):
    for folder in sorted((src / "cifar10" / split).iterdir()):
        target = dst / "cifar10" / split / folder.name
        target.mkdir(parents=True, exist_ok=True)
        for f in sorted(folder.iterdir())[:per_class]:
            shutil.copyfile(f, target / f.name)
PY
du -sh --apparent-size "$out" "$out/wheels" "$out/data"
