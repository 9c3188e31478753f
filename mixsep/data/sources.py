"""The two sources of a mean image, one class each (``conf/data/{gray,color}/<name>.yaml`` picks it by ``_target_``):
where its files are, in which layout, and how a split is decoded into uint8 tensors (torchvision's readers). A
source of one's own is a ``Source`` subclass with ``@register_source`` in a module named by ``extensions``."""

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
DEFAULT_SOURCES = "mnist+cifar10"  # runs and checkpoints from before other sources existed used this pair
FIXES = {  # why a split could not be loaded -> what to do (``where``: the layout to point data.root at)
    "missing": "let torchvision download the data (data.download=true), or {where}",
    "download": "the download through torchvision failed (no network?); offline: {where} (data.download=false)",
    "unreadable": "replace the unreadable file (an official layout's: delete it, data.download=true), or {where}",
}


def resize_mnist(images: torch.Tensor) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 1, 32, 32) uint8: PIL bilinear (antialiased) resize. One channel is stored; the
    three equal channels are a broadcast view made when the batch is turned into floats."""
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


def list_image_folder(split_dir: Path, allow_empty: bool = True) -> list[Path]:
    """An ImageFolder split's image files in torchvision's order: class, then file name (an empty class folder
    or none at all: FileNotFoundError, unless ``allow_empty``). Each class folder is listed one level deep, as
    names: a link inside it is never followed into another folder (torchvision's ``make_dataset`` walks them)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes

    try:
        classes = find_classes(split_dir)[0]
    except FileNotFoundError:
        if allow_empty:
            return []
        raise
    files: list[Path] = []
    for name in classes:
        folder = split_dir / name  # names as strings: a split holds tens of thousands of files
        found = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMG_EXTENSIONS))
        if not found and not allow_empty:
            kinds = ", ".join(IMG_EXTENSIONS)
            raise FileNotFoundError(f"Found no valid file for the classes {name}. Supported extensions are: {kinds}")
        files += [folder / n for n in found]
    return files


def _read_rgb32(path: Path) -> np.ndarray:
    """(32, 32, 3) uint8; another size is refused from the header, before the pixels are decoded."""
    with Image.open(path) as img:
        if img.size != (32, 32):
            raise ValueError(f"expected a 32x32 image, got {img.size[0]}x{img.size[1]}")
        return np.asarray(img.convert("RGB"))


class Source:
    """One source: its ``kind`` (gray: (N, 1, 32, 32) uint8 images, or color: (N, 3, 32, 32)), the options of
    data/<kind>= it serves (``names``), its layout (``layout``, ``looked_at``), the files a split is decoded from
    (``files``: the cache's key, so a changed file decodes again) and how a split is read (``load``)."""

    kind: str
    name: str
    names: tuple[str, ...] = ()

    def __init__(self, name: str | None = None) -> None:
        name = name or self.names[0]
        if name not in self.names:
            raise ConfigError(f"data/{self.kind}={name} is not one of {', '.join(self.names)}")
        self.name = name

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
        self, root: Path, detail: str, looked_at: list[Path] | None = None, why: str = "missing"
    ) -> DataNotFoundError:
        """One line: what failed, the paths looked at, and the fix for ``why`` it failed (one of ``FIXES``)."""
        where = f"point data.root=/path/to/data (or MIXSEP_DATA_ROOT) at a folder with {self.layout()}"
        looked = ", ".join(str(p) for p in looked_at or self.looked_at(root))
        return DataNotFoundError(
            f"could not load the datasets from data.root={root} ({root.resolve()}): {' '.join(detail.split())}; "
            f"looked at {looked}. Fix: {FIXES[why].format(where=where)}"
        )

    def _torchvision(self, root: Path, train: bool, download: bool, created: list[Path], dataset: str, options: dict):
        """``torchvision.datasets.<dataset>(**options).data``, downloaded if asked (a failed one leaves nothing)."""
        import torchvision.datasets

        try:
            with no_debris(download, root, *created):
                return getattr(torchvision.datasets, dataset)(download=download, **options).data
        except Exception as err:  # not found, a failed download, or a truncated or corrupt file
            why = "unreadable" if self.files(root, train) else "download" if download else "missing"
            raise self.missing(root, f"{dataset}: {err}", why=why) from err


SOURCE_CLASSES: dict[str, dict[str, type[Source]]] = {"gray": {}, "color": {}}  # kind -> option -> class


def register_source(cls: type[Source]) -> type[Source]:
    """Declare a source class (a decorator): each of its ``names`` becomes an option of data/<kind>=. A wrong kind
    or name, or a name another class serves, is one line wherever the declaring module is imported."""
    what = f"source {getattr(cls, '__name__', cls)!r}"
    if not (isinstance(cls, type) and issubclass(cls, Source)):
        raise ConfigError(f"{what}: @register_source declares a subclass of mixsep.data.sources.Source")
    kind, names = getattr(cls, "kind", None), cls.names
    if kind not in SOURCE_CLASSES:
        raise ConfigError(f"{what}: kind must be 'gray' or 'color', not {kind!r}")
    if not (isinstance(names, (tuple, list)) and names and all(str(n).isidentifier() for n in names)):
        raise ConfigError(
            f"{what}: names must be a tuple of the options it serves (Python names), e.g. names = ('letters',)"
        )
    for name in names:
        known = SOURCE_CLASSES[kind].get(name, cls)
        if (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ConfigError(f"a {kind} source named {name} is already declared ({known.__name__}): rename it")
    SOURCE_CLASSES[kind].update(dict.fromkeys(names, cls))
    return cls


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
    """A 28x28 gray source in torchvision's idx layout, resized to 32x32; EMNIST's split in EMNIST's file names."""

    kind = "gray"
    DATASETS = {  # option -> torchvision's class, EMNIST's split, the file stems of the train and test splits
        "mnist": ("MNIST", None, ("train", "t10k")),
        "fashion_mnist": ("FashionMNIST", None, ("train", "t10k")),
        "kmnist": ("KMNIST", None, ("train", "t10k")),
        "emnist_letters": ("EMNIST", "letters", ("emnist-letters-train", "emnist-letters-test")),
    }
    names = tuple(DATASETS)

    def __init__(self, name: str = "mnist") -> None:
        super().__init__(name)
        self.dataset, self.split, self.stems = self.DATASETS[name]

    def looked_at(self, root: Path) -> list[Path]:
        return [root / self.dataset / "raw"]

    def layout(self) -> str:
        return f"<root>/{self.dataset}/raw/{{{','.join(self.stems)}}}-{{images-idx3,labels-idx1}}-ubyte"

    def files(self, root: Path, train: bool) -> list[Path]:
        return sorted((root / self.dataset / "raw").glob(f"{self.stems[0 if train else 1]}-images-idx3-ubyte*"))

    def load(self, root: Path, train: bool, download: bool) -> torch.Tensor:
        split = {"split": self.split} if self.split else {}
        created = [root / self.dataset]
        options = {"root": str(root), "train": train, **split}
        data = self._torchvision(root, train, download, created, self.dataset, options)
        images = data.transpose(1, 2).contiguous() if self.split else data  # EMNIST stores them transposed
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
        super().__init__(name)
        self.folder = str(folder)

    @property
    def label(self) -> str:
        return f"image_folder:{self.folder}" if self.name == "image_folder" else self.name

    def _split_dir(self, root: Path, train: bool) -> Path:
        return root / self.folder / ("train" if train else "test")

    def looked_at(self, root: Path) -> list[Path]:
        return [self._split_dir(root, True), self._split_dir(root, False)]

    def layout(self) -> str:
        return f"<root>/{self.folder}/{{train,test}}/<class>/*.png|jpg (32x32)"

    def has_folder(self, root: Path) -> bool:
        return self._split_dir(root, True).is_dir() and self._split_dir(root, False).is_dir()

    def files(self, root: Path, train: bool) -> list[Path]:
        return list_image_folder(self._split_dir(root, train))

    def load(self, root: Path, train: bool, download: bool) -> torch.Tensor:
        split_dir = self._split_dir(root, train)
        if not self.has_folder(root):
            raise self.missing(root, f"{self.name}: no known layout found.")
        try:  # a copy that broke off part-way is refused, rather than trained on as a lopsided set
            files = list_image_folder(split_dir, allow_empty=False)
        except FileNotFoundError as err:
            detail = f"{self.name}: {split_dir} or a class folder in it holds no images ({err}). Remove it or fill it."
            raise self.missing(root, detail, [split_dir]) from err
        out = np.empty((len(files), 32, 32, 3), dtype=np.uint8)
        for i, path in enumerate(files):
            try:
                out[i] = _read_rgb32(path)
            except Exception as err:  # PIL's own messages ("image file is truncated") do not name the file
                detail = f"{self.name} image unreadable: {path}: {err}"
                raise self.missing(root, detail, [split_dir], why="unreadable") from err
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
        if (self.on_disk(root) or ("archive" if download else None)) != "archive":
            return super().load(root, train, download)
        created = [root / self.archive, root / self.tarball]
        data = self._torchvision(root, train, download, created, self.dataset, {"root": str(root), "train": train})
        return torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2).contiguous()


@register_source
class Svhn(Source):
    """SVHN's 32x32 digits in torchvision's ``.mat`` files, checked by their MD5 (downloadable; needs scipy)."""

    kind = "color"
    names = ("svhn",)

    def _path(self, root: Path, train: bool) -> Path:
        return root / "svhn" / f"{'train' if train else 'test'}_32x32.mat"

    def looked_at(self, root: Path) -> list[Path]:
        return [self._path(root, True), self._path(root, False)]

    def layout(self) -> str:
        return "<root>/svhn/{train,test}_32x32.mat (torchvision's SVHN files)"

    def files(self, root: Path, train: bool) -> list[Path]:
        return [path] if (path := self._path(root, train)).is_file() else []

    def load(self, root: Path, train: bool, download: bool) -> torch.Tensor:
        options = {"root": str(root / "svhn"), "split": "train" if train else "test"}
        data = self._torchvision(root, train, download, [root / "svhn"], "SVHN", options)
        return torch.from_numpy(np.ascontiguousarray(data))


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


def parse_pair(label: str) -> tuple[Source, Source]:
    """The sources of a pair's label (``mnist+cifar10``, ``fashion_mnist+image_folder:textures``)."""
    gray, color = label.split("+", 1)
    name, _, folder = color.partition(":")
    return make_source(gray, "gray"), make_source({"name": name, "folder": folder} if folder else name, "color")
