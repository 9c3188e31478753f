"""The two sources of a mean image, one class each: where a source's files are, in which layout, and how they
are decoded into uint8 tensors. ``conf/data/{gray,color}/<name>.yaml`` picks the class by ``_target_``.

Gray sources (torchvision's idx layout ``<root>/<ClassName>/raw/``, 28x28 resized to 32x32): ``TorchvisionGray``
(``mnist``, ``fashion_mnist``, ``kmnist``). Colour sources (32x32 RGB): ``Cifar`` (``cifar10``, ``cifar100``:
torchvision's archive, or ImageFolder ``<root>/<name>/{train,test}/<class>/*``), ``Svhn`` (torchvision's
``<root>/svhn/{train,test}_32x32.mat``) and ``ImageFolder`` (any ``<root>/<folder>/{train,test}/<class>/*`` of
32x32 images). torchvision downloads all but the last.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mixsep.errors import ConfigError, DataNotFoundError

CIFAR_CLASSES = tuple("airplane automobile bird cat deer dog frog horse ship truck".split())
DATASET_SUFFIXES = (".png", ".jpg", ".jpeg")
DEFAULT_SOURCES = "mnist+cifar10"  # runs and checkpoints from before other sources existed used this pair


def resize_mnist(images: torch.Tensor) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 1, 32, 32) uint8: PIL bilinear (antialiased) resize.

    Kept with one channel (a third of the memory and of the bytes gathered per batch); the three
    equal channels are a broadcast view made when the batch is turned into floats.
    """
    out = np.empty((len(images), 32, 32), dtype=np.uint8)
    for i, img in enumerate(images.numpy()):
        out[i] = np.asarray(Image.fromarray(img).resize((32, 32), Image.BILINEAR))
    return torch.from_numpy(out).unsqueeze(1)


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


def list_image_folder(split_dir: Path, strict: bool = True) -> list[Path]:
    """Image files of an ImageFolder split in a deterministic order: class (CIFAR-10's official order
    first, then by name), file name."""
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    order = {c: i for i, c in enumerate(CIFAR_CLASSES)}
    classes.sort(key=lambda c: (order.get(c, len(order)), c))
    files: list[Path] = []
    for c in classes:
        folder = split_dir / c  # names as strings: a split holds tens of thousands of files
        found = [folder / n for n in sorted(os.listdir(folder)) if os.path.splitext(n)[1].lower() in DATASET_SUFFIXES]
        if not found and strict:  # a copy that broke off part-way: refuse, rather than train on a lopsided set
            raise ValueError(f"the class folder {folder} holds no images ({', '.join(DATASET_SUFFIXES)})")
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


class Source:
    """One source, declared by a subclass with ``@register_source``: its ``kind`` (gray: (N, 1, 32, 32) uint8
    images, or color: (N, 3, 32, 32)), the config options it serves (``names``), its file layout (``layout``,
    ``looked_at``), the files a split is decoded from (``files``: the decoded cache's identity, so a change of
    any file decodes again), and how a split is read (``load``, which may download). A source of one's own is one
    such class in a module named by ``extensions`` (or ``MIXSEP_EXTENSIONS``), and a ``data/<kind>/<name>.yaml``
    naming it by ``_target_``."""

    kind: str
    name: str
    names: tuple[str, ...] = ()  # the options of data/<kind>= this class serves (its constructor takes name=)

    @property
    def label(self) -> str:
        """As written in metrics.json and checkpoints (``mnist``, ``image_folder:<folder>``)."""
        return self.name

    @property
    def cache_name(self) -> str:
        return self.label.replace(":", "-")

    def looked_at(self, root: Path) -> list[Path]:
        """Where its files are looked for (named in a missing-data error)."""
        raise NotImplementedError

    def layout(self) -> str:
        """Its on-disk layout, in words."""
        raise NotImplementedError

    def files(self, root: Path, train: bool) -> list[Path]:
        """The files a split is decoded from (the cache key)."""
        raise NotImplementedError

    def load(self, root: Path, train: bool, download: bool) -> torch.Tensor:
        """(N, C, 32, 32) uint8 images of a split."""
        raise NotImplementedError

    def missing(
        self, root: Path, detail: str, looked_at: list[Path] | None = None, download: bool = False, unreadable=False
    ) -> DataNotFoundError:
        """One line: what failed, the paths looked at, and the fixes that apply to this failure."""
        where = f"point data.root=/path/to/data (or MIXSEP_DATA_ROOT) at a folder with {self.layout()}"
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
        looked = ", ".join(str(p) for p in looked_at or self.looked_at(root))
        return DataNotFoundError(
            f"could not load the datasets from data.root={root} ({root.resolve()}): {' '.join(detail.split())}; "
            f"looked at {looked}. Fix: {fixes}"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r})"


SOURCE_CLASSES: dict[str, dict[str, type[Source]]] = {"gray": {}, "color": {}}  # kind -> option -> class


def register_source(cls: type[Source]) -> type[Source]:
    """Declare a source class (a decorator): each of its ``names`` becomes an option of data/<kind>= that
    reports, checkpoints and evaluate can name. A wrong kind or name, or a name already served by another class,
    is one line wherever the declaring module is imported (every command imports it the same way)."""
    what = f"source {getattr(cls, '__name__', cls)!r}"
    if not (isinstance(cls, type) and issubclass(cls, Source)):
        raise ConfigError(f"{what}: @register_source declares a subclass of mixsep.data.sources.Source")
    kind = getattr(cls, "kind", None)
    if kind not in SOURCE_CLASSES:
        raise ConfigError(f"{what}: kind must be 'gray' or 'color', not {kind!r}")
    names = cls.names
    if isinstance(names, str) or not isinstance(names, (tuple, list)) or not names:
        raise ConfigError(f"{what}: names must be a tuple of the options it serves, e.g. names = ('letters',)")
    for name in names:
        if not (isinstance(name, str) and name.isidentifier()):
            raise ConfigError(
                f"{what}: each of its names is an option like data/{kind}=letters (a Python name), not {name!r}"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"{what}: names lists an option twice ({', '.join(names)})")
    for name in names:
        known = SOURCE_CLASSES[kind].get(name)
        if known is not None and _identity(known) != _identity(cls):
            raise ConfigError(f"a {kind} source named {name} is already declared ({known.__name__}): rename it")
    for name in names:
        SOURCE_CLASSES[kind][name] = cls
    return cls


def _identity(cls: type) -> tuple[str, str]:
    return cls.__module__, cls.__qualname__


def check_images(source: Source, images: torch.Tensor, split: str) -> torch.Tensor:
    """A source's contract: (N, 1, 32, 32) uint8 for gray, (N, 3, 32, 32) for colour, N > 0."""
    channels = 1 if source.kind == "gray" else 3
    shaped = isinstance(images, torch.Tensor) and images.shape[1:] == (channels, 32, 32)
    if not (shaped and images.dtype == torch.uint8 and len(images)):
        got = f"{tuple(images.shape)} {images.dtype}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ConfigError(
            f"data/{source.kind}={source.label}: its {split} split loads as {got}; a {source.kind} source gives "
            f"(N, {channels}, 32, 32) uint8 images, N > 0"
        )
    return images


@register_source
class TorchvisionGray(Source):
    """A 28x28 gray source in torchvision's idx layout, resized to 32x32 and kept with one channel; EMNIST's
    ``split`` (``emnist_letters``: its letters) in EMNIST's own file names."""

    kind = "gray"
    DATASETS = {  # option -> (torchvision's class, EMNIST's split)
        "mnist": ("MNIST", None),
        "fashion_mnist": ("FashionMNIST", None),
        "kmnist": ("KMNIST", None),
        "emnist_letters": ("EMNIST", "letters"),
    }
    names = tuple(DATASETS)

    def __init__(self, name: str = "mnist") -> None:
        if name not in self.DATASETS:
            raise ConfigError(f"data/gray={name} is not one of {sorted(self.DATASETS)}")
        self.name, (self.dataset, self.split) = name, self.DATASETS[name]

    def looked_at(self, root: Path) -> list[Path]:
        return [root / self.dataset / "raw"]

    def _stem(self, train: bool) -> str:
        """The split's file names as torchvision reads them (MNIST's train/t10k, EMNIST's own)."""
        if self.split:
            return f"emnist-{self.split}-{'train' if train else 'test'}"
        return "train" if train else "t10k"

    def layout(self) -> str:
        stems = f"emnist-{self.split}-{{train,test}}" if self.split else "{train,t10k}"
        return f"<root>/{self.dataset}/raw/{stems}-{{images-idx3,labels-idx1}}-ubyte"

    def files(self, root: Path, train: bool) -> list[Path]:
        return sorted((root / self.dataset / "raw").glob(f"{self._stem(train)}-images-idx3-ubyte*"))

    def load(self, root: Path, train: bool, download: bool) -> torch.Tensor:
        import torchvision.datasets

        split = {"split": self.split} if self.split else {}
        try:
            with no_debris(download, root, root / self.dataset):
                ds = getattr(torchvision.datasets, self.dataset)(str(root), train=train, download=download, **split)
        except RuntimeError as err:  # torchvision: "Dataset not found. You can use download=True ..." / download failed
            raise self.missing(root, f"{self.dataset}: {err}", download=download) from err
        except Exception as err:  # truncated / corrupt idx files
            raise self.missing(root, f"{self.dataset} is unreadable: {err!r}", unreadable=True) from err
        images = ds.data.transpose(1, 2).contiguous() if self.split else ds.data  # EMNIST stores them transposed
        if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) == 0:
            raise self.missing(root, f"{self.dataset} has shape {tuple(images.shape)}")
        return resize_mnist(images)


@register_source
class ImageFolder(Source):
    """Any ImageFolder of 32x32 images, ``<root>/<folder>/{train,test}/<class>/*.png|jpg``."""

    kind = "color"
    names = ("image_folder",)

    def __init__(self, folder: str | None = None, name: str = "image_folder") -> None:
        if not folder:
            raise ConfigError("data/color=image_folder needs data.color.folder=<name of the folder under data.root>")
        self.name, self.folder = name, str(folder)

    @property
    def label(self) -> str:
        return f"image_folder:{self.folder}" if self.name == "image_folder" else self.name

    def looked_at(self, root: Path) -> list[Path]:
        return [root / self.folder / "train", root / self.folder / "test"]

    def layout(self) -> str:
        return f"<root>/{self.folder}/{{train,test}}/<class>/*.png|jpg (32x32)"

    def has_folder(self, root: Path) -> bool:
        return (root / self.folder / "train").is_dir() and (root / self.folder / "test").is_dir()

    def files(self, root: Path, train: bool) -> list[Path]:
        split_dir = root / self.folder / ("train" if train else "test")
        return list_image_folder(split_dir, strict=False) if split_dir.is_dir() else []

    def load(self, root: Path, train: bool, download: bool) -> torch.Tensor:
        if not self.has_folder(root):
            raise self.missing(root, f"{self.name}: no known layout found.")
        split_dir = root / self.folder / ("train" if train else "test")
        try:
            files = list_image_folder(split_dir)
        except ValueError as err:
            raise self.missing(root, f"{self.name}: {err}. Remove that folder or fill it.", [split_dir]) from err
        if not files:
            raise self.missing(root, f"{self.name}: the ImageFolder split holds no images.", [split_dir])
        out = np.empty((len(files), 32, 32, 3), dtype=np.uint8)
        try:
            for i, f in enumerate(files):
                out[i] = _read_rgb32(f)
        except Exception as err:
            raise self.missing(root, f"{self.name} image unreadable: {err}", [split_dir], unreadable=True) from err
        return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


@register_source
class Cifar(ImageFolder):
    """CIFAR-10 or CIFAR-100: torchvision's pickled archive (downloadable), or an ImageFolder ``<root>/<name>/``."""

    ARCHIVES = {  # folder, tarball, torchvision's class
        "cifar10": ("cifar-10-batches-py", "cifar-10-python.tar.gz", "CIFAR10"),
        "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz", "CIFAR100"),
    }
    names = tuple(ARCHIVES)

    def __init__(self, name: str = "cifar10") -> None:
        if name not in self.ARCHIVES:
            raise ConfigError(f"data/color={name} is not one of {list(SOURCE_CLASSES['color'])}")
        super().__init__(folder=name, name=name)
        self.archive, self.tarball, self.dataset = self.ARCHIVES[name]

    @property
    def cache_name(self) -> str:
        return "cifar" if self.name == "cifar10" else self.name  # the cache name from before other sources existed

    def looked_at(self, root: Path) -> list[Path]:
        return [root / self.archive, *super().looked_at(root)]

    def layout(self) -> str:
        return f"<root>/{self.archive}/ or {super().layout()}"

    def on_disk(self, root: Path) -> str | None:
        """'archive' (torchvision's), 'folder' (ImageFolder) or None."""
        if (root / self.archive).is_dir():
            return "archive"
        return "folder" if self.has_folder(root) else None

    def files(self, root: Path, train: bool) -> list[Path]:
        if self.on_disk(root) == "archive":
            return sorted((root / self.archive).iterdir())
        return super().files(root, train)

    def load(self, root: Path, train: bool, download: bool) -> torch.Tensor:
        layout = self.on_disk(root) or ("archive" if download else None)
        if layout != "archive":
            return super().load(root, train, download)
        import torchvision.datasets

        try:
            with no_debris(download, root, root / self.archive, root / self.tarball):
                data = getattr(torchvision.datasets, self.dataset)(str(root), train=train, download=download).data
        except Exception as err:
            raise self.missing(root, f"{self.name} archive: {err}", download=download) from err
        return torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2).contiguous()


@register_source
class Svhn(Source):
    """SVHN's 32x32 digits in torchvision's ``.mat`` files (downloadable; reading them needs scipy)."""

    kind = "color"
    names = ("svhn",)

    def __init__(self, name: str = "svhn") -> None:
        if name != "svhn":
            raise ConfigError(f"data/color={name} is not one of {list(SOURCE_CLASSES['color'])}")
        self.name = name

    def _path(self, root: Path, train: bool) -> Path:
        return root / "svhn" / f"{'train' if train else 'test'}_32x32.mat"

    def looked_at(self, root: Path) -> list[Path]:
        return [self._path(root, True), self._path(root, False)]

    def layout(self) -> str:
        return "<root>/svhn/{train,test}_32x32.mat (torchvision's SVHN files)"

    def files(self, root: Path, train: bool) -> list[Path]:
        path = self._path(root, train)
        return [path] if path.is_file() else []

    def load(self, root: Path, train: bool, download: bool) -> torch.Tensor:
        split, path = ("train" if train else "test"), self._path(root, train)
        try:
            if not path.is_file() and download:
                from torchvision.datasets import SVHN

                with no_debris(download, root, root / "svhn"):
                    SVHN(str(root / "svhn"), split=split, download=True)
            from scipy.io import loadmat

            images = loadmat(str(path))["X"]  # (32, 32, 3, N), as torchvision reads it
        except FileNotFoundError as err:
            raise self.missing(root, f"SVHN: {err}", [path], download=download) from err
        except Exception as err:
            detail = f"SVHN {split} set unreadable or not downloaded: {err}"
            raise self.missing(root, detail, [path], download=download, unreadable=path.is_file()) from err
        return torch.from_numpy(np.ascontiguousarray(np.transpose(images, (3, 2, 0, 1))))


def make_source(spec: Source | str | Mapping, kind: str) -> Source:
    """A source from its class (built by Hydra from ``_target_``), its name, or its config node without
    ``_target_`` (as older runs and checkpoints wrote it): ``{name: image_folder, folder: ...}``."""
    if isinstance(spec, Source):
        if spec.kind != kind:
            raise ConfigError(f"data/{kind}: {spec.label} is a {spec.kind} source, not a {kind} one")
        return spec
    options = {"name": spec} if isinstance(spec, str) else {k: v for k, v in dict(spec).items() if k != "_target_"}
    classes = SOURCE_CLASSES[kind]
    name = str(options.get("name"))
    if name not in classes:
        raise ConfigError(
            f"data/{kind}={name} is not one of {', '.join(classes)} (a source of your own: @register_source in a "
            "module named by extensions=[...] or MIXSEP_EXTENSIONS)"
        )
    return classes[name](**options)


def pair_label(gray: Source, color: Source) -> str:
    return f"{gray.label}+{color.label}"


def parse_pair(label: str) -> tuple[Source, Source]:
    """The inverse of ``pair_label``."""
    gray, color = label.split("+", 1)
    if color.startswith("image_folder:"):
        return make_source(gray, "gray"), ImageFolder(folder=color.split(":", 1)[1])
    return make_source(gray, "gray"), make_source(color, "color")
