"""The two sources of a mean image, by name: a gray source and a colour source, decoded to uint8.

Gray sources (torchvision's idx layout ``<root>/<ClassName>/raw/``, 28x28 resized to 32x32):
``mnist``, ``fashion_mnist``, ``kmnist``. Colour sources (32x32 RGB): ``cifar10`` and ``cifar100``
(torchvision's archive, or ImageFolder ``<root>/<name>/{train,test}/<class>/*``), ``svhn``
(torchvision's ``<root>/svhn/{train,test}_32x32.mat``) and ``image_folder`` (any
``<root>/<folder>/{train,test}/<class>/*`` of 32x32 images). torchvision downloads the first five.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mixsep.errors import ConfigError, DataNotFoundError

CIFAR_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
DATASET_SUFFIXES = (".png", ".jpg", ".jpeg")
GRAY_SOURCES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}  # torchvision class
COLOR_SOURCES = ("cifar10", "cifar100", "svhn", "image_folder")
DEFAULT_SOURCES = "mnist+cifar10"  # runs and checkpoints from before other sources existed used this pair
DEFAULT_LAYOUT = (
    "<root>/MNIST/raw/*-ubyte and either <root>/cifar-10-batches-py/ or <root>/cifar10/{train,test}/<class>/*.png|jpg"
)


def source_name(source) -> str:
    """A source given as its name or as its config group node ({name: ..., ...})."""
    return source if isinstance(source, str) else str(source["name"])


def check_sources(gray, color) -> None:
    if source_name(gray) not in GRAY_SOURCES:
        raise ConfigError(f"data/gray={source_name(gray)} is not one of {sorted(GRAY_SOURCES)}")
    if source_name(color) not in COLOR_SOURCES:
        raise ConfigError(f"data/color={source_name(color)} is not one of {list(COLOR_SOURCES)}")
    _folder_name(color)  # image_folder: which folder


def _folder_name(source) -> str:
    """The folder of a colour source's ImageFolder layout: cifar10/, cifar100/, or image_folder's own."""
    name = source_name(source)
    if name == "image_folder":
        folder = None if isinstance(source, str) else source.get("folder")
        if not folder:
            raise ConfigError("data/color=image_folder needs data.color.folder=<name of the folder under data.root>")
        return str(folder)
    return name


def source_label(source) -> str:
    """A source as written in metrics.json: its name; an image folder as ``image_folder:<folder>``."""
    name = source_name(source)
    return f"image_folder:{_folder_name(source)}" if name == "image_folder" else name


def pair_label(gray, color) -> str:
    return f"{source_label(gray)}+{source_label(color)}"


def parse_pair(label: str) -> tuple[str, str | dict]:
    """The inverse of ``pair_label``: (gray, colour) as MixDataModule takes them."""
    gray, color = label.split("+", 1)
    if color.startswith("image_folder:"):
        return gray, {"name": "image_folder", "folder": color.split(":", 1)[1]}
    return gray, color


def _missing_data_error(
    root: Path,
    looked_at: list[Path],
    detail: str = "",
    download: bool = False,
    unreadable: bool = False,
    layout: str = "",
) -> DataNotFoundError:
    """One line: what failed, the paths looked at, and the fixes that apply to this failure."""
    where = f"point data.root=/path/to/data (or MIXSEP_DATA_ROOT) at a folder with {layout or DEFAULT_LAYOUT}"
    if unreadable:
        fixes = (
            "replace the unreadable file with a good copy (or delete it, and with the official layouts let "
            f"data.download=true fetch it again), or {where}"
        )
    elif download:
        fixes = (
            "the download through torchvision failed (no network, or the server refused); fix it offline: "
            f"{where} (data.download=false never tries the network)"
        )
    else:
        fixes = f"let torchvision download the data (data.download=true), or {where}"
    reason = " ".join(detail.split()) if detail else "missing"
    return DataNotFoundError(
        f"could not load the datasets from data.root={root} ({root.resolve()}): {reason}; looked at "
        f"{', '.join(str(p) for p in looked_at)}. Fix: {fixes}"
    )


# --------------------------------------------------------------------------- gray sources
def resize_mnist(images: torch.Tensor) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 1, 32, 32) uint8: PIL bilinear (antialiased) resize.

    Kept with one channel (a third of the memory and of the bytes gathered per batch); the three
    equal channels are a broadcast view made when the batch is turned into floats.
    """
    out = np.empty((len(images), 32, 32), dtype=np.uint8)
    for i, img in enumerate(images.numpy()):
        out[i] = np.asarray(Image.fromarray(img).resize((32, 32), Image.BILINEAR))
    return torch.from_numpy(out).unsqueeze(1)


def _gray_paths(root: Path, name: str) -> list[Path]:
    return [root / GRAY_SOURCES[name] / "raw"]


@contextlib.contextmanager
def no_debris(download: bool, root: Path, *targets: Path) -> Iterator[None]:
    """A download that fails takes away what it created (the targets, and ``root`` itself, that did not
    exist before): nothing is written inside data.root except by a successful download."""
    fresh = [p for p in (root, *targets) if not p.exists()] if download else []
    try:
        yield
    except BaseException:
        for path in fresh:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink()
        raise


def load_gray(root: Path, name: str, train: bool, download: bool) -> torch.Tensor:
    import torchvision.datasets

    cls = getattr(torchvision.datasets, GRAY_SOURCES[name])
    label = GRAY_SOURCES[name]
    layout = f"<root>/{label}/raw/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte"
    try:
        with no_debris(download, root, root / label):
            ds = cls(str(root), train=train, download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found. You can use download=True ..." / download failed
        raise _missing_data_error(root, _gray_paths(root, name), f"{label}: {err}", download, layout=layout) from err
    except Exception as err:  # truncated / corrupt idx files
        raise _missing_data_error(
            root, _gray_paths(root, name), f"{label} is unreadable: {err!r}", unreadable=True, layout=layout
        ) from err
    images = ds.data
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) == 0:
        raise _missing_data_error(
            root, _gray_paths(root, name), f"{label} has shape {tuple(images.shape)}", layout=layout
        )
    return resize_mnist(images)


def load_mnist(root: Path, train: bool, download: bool) -> torch.Tensor:
    return load_gray(root, "mnist", train, download)


# --------------------------------------------------------------------------- colour sources
def cifar_layout(root: Path, name: str = "cifar10") -> str | None:
    """'archive' (torchvision's cifar-10-batches-py / cifar-100-python), 'folder' (ImageFolder) or None."""
    archive = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}.get(name)
    if archive and (root / archive).is_dir():
        return "archive"
    if (root / name / "train").is_dir() and (root / name / "test").is_dir():
        return "folder"
    return None


def _color_paths(root: Path, source) -> list[Path]:
    name = source_name(source)
    if name == "svhn":
        return [root / "svhn" / "train_32x32.mat", root / "svhn" / "test_32x32.mat"]
    folder = _folder_name(source)
    archive = {"cifar10": [root / "cifar-10-batches-py"], "cifar100": [root / "cifar-100-python"]}.get(name, [])
    return archive + [root / folder / "train", root / folder / "test"]


def _color_layout(source) -> str:
    name, folder = source_name(source), _folder_name(source)
    if name == "svhn":
        return "<root>/svhn/{train,test}_32x32.mat (torchvision's SVHN files)"
    archive = {"cifar10": "<root>/cifar-10-batches-py/ or ", "cifar100": "<root>/cifar-100-python/ or "}.get(name, "")
    return f"{archive}<root>/{folder}/{{train,test}}/<class>/*.png|jpg (32x32)"


def list_image_folder(split_dir: Path, strict: bool = True) -> list[Path]:
    """Image files of an ImageFolder split in a deterministic order: class (CIFAR-10's official order
    first, then by name), file name."""
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    order = {c: i for i, c in enumerate(CIFAR_CLASSES)}
    classes.sort(key=lambda c: (order.get(c, len(order)), c))
    files: list[Path] = []
    for c in classes:
        found = sorted(p for p in (split_dir / c).iterdir() if p.suffix.lower() in DATASET_SUFFIXES)
        if not found and strict:  # a copy that broke off part-way: refuse, rather than train on a lopsided set
            raise ValueError(f"the class folder {split_dir / c} holds no images ({', '.join(DATASET_SUFFIXES)})")
        files += found
    return files


def _read_rgb32(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB"))
    except Exception as err:  # PIL's own messages ("image file is truncated") do not name the file
        raise ValueError(f"{path}: {err}") from err
    if arr.shape != (32, 32, 3):
        raise ValueError(f"{path}: expected a 32x32 image, got {arr.shape[1]}x{arr.shape[0]}")
    return arr


def _load_svhn(root: Path, train: bool, download: bool) -> torch.Tensor:
    split = "train" if train else "test"
    path = root / "svhn" / f"{split}_32x32.mat"
    try:
        if not path.is_file() and download:
            from torchvision.datasets import SVHN

            with no_debris(download, root, root / "svhn"):
                SVHN(str(root / "svhn"), split=split, download=True)
        from scipy.io import loadmat

        images = loadmat(str(path))["X"]  # (32, 32, 3, N), as torchvision reads it
    except FileNotFoundError as err:
        raise _missing_data_error(root, [path], f"SVHN: {err}", download, layout=_color_layout("svhn")) from err
    except Exception as err:
        raise _missing_data_error(
            root,
            [path],
            f"SVHN {split} set unreadable or not downloaded: {err}",
            download,
            unreadable=path.is_file(),
            layout=_color_layout("svhn"),
        ) from err
    return torch.from_numpy(np.ascontiguousarray(np.transpose(images, (3, 2, 0, 1))))


def load_color(root: Path, source, train: bool, download: bool) -> torch.Tensor:
    """(N, 3, 32, 32) uint8 images of a colour source, from whichever layout is present."""
    name = source_name(source)
    if name == "svhn":
        return _load_svhn(root, train, download)
    folder, paths, layout_text = _folder_name(source), _color_paths(root, source), _color_layout(source)
    layout = (
        cifar_layout(root, folder)
        if name != "image_folder"
        else ("folder" if (root / folder / "train").is_dir() and (root / folder / "test").is_dir() else None)
    )
    if layout is None and download and name in ("cifar10", "cifar100"):
        layout = "archive"
    if layout is None:
        raise _missing_data_error(root, paths, f"{name}: no known layout found.", layout=layout_text)
    if layout == "archive":
        from torchvision.datasets import CIFAR10, CIFAR100

        try:
            archive = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
            tarball = "cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz"
            with no_debris(download, root, root / archive, root / tarball):
                data = (CIFAR10 if name == "cifar10" else CIFAR100)(str(root), train=train, download=download).data
        except Exception as err:
            raise _missing_data_error(root, paths, f"{name} archive: {err}", download, layout=layout_text) from err
        return torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2).contiguous()
    split_dir = root / folder / ("train" if train else "test")
    try:
        files = list_image_folder(split_dir)
    except ValueError as err:
        raise _missing_data_error(
            root, [split_dir], f"{name}: {err}. Remove that folder or fill it.", layout=layout_text
        ) from err
    if not files:
        raise _missing_data_error(
            root, [split_dir], f"{name}: the ImageFolder split holds no images.", layout=layout_text
        )
    out = np.empty((len(files), 32, 32, 3), dtype=np.uint8)
    try:
        for i, f in enumerate(files):
            out[i] = _read_rgb32(f)
    except Exception as err:
        raise _missing_data_error(
            root, [split_dir], f"{name} image unreadable: {err}", unreadable=True, layout=layout_text
        ) from err
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def load_cifar(root: Path, train: bool, download: bool) -> torch.Tensor:
    return load_color(root, "cifar10", train, download)


def source_files(root: Path, source, kind: str, train: bool) -> list[Path]:
    """The files a split of a source is decoded from (for the cache key)."""
    name = source_name(source)
    if kind == "gray":
        prefix = "train" if train else "t10k"
        return sorted((root / GRAY_SOURCES[name] / "raw").glob(f"{prefix}-images-idx3-ubyte*"))
    if name == "svhn":
        path = root / "svhn" / f"{'train' if train else 'test'}_32x32.mat"
        return [path] if path.is_file() else []
    folder = _folder_name(source)
    if name != "image_folder" and cifar_layout(root, folder) == "archive":
        archive = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}[name]
        return sorted((root / archive).iterdir())
    split_dir = root / folder / ("train" if train else "test")
    return list_image_folder(split_dir, strict=False) if split_dir.is_dir() else []
