"""Datasets in one in-memory form: uint8 images N×H×W×C, int64 labels, class names.

Sources: the embedded `digits` default (no network), torchvision sets read from `data_root`
(downloaded only when asked), Fashion-MNIST from Debian's `dataset-fashion-mnist` package when
`data_root` does not hold it, a user's `npz` file and an ImageFolder-style `folder`. Every source
can be cut to its first `train_size` / `test_size` images.
"""
from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataFormatError, DataNotFoundError


@dataclass(frozen=True)
class ImageDataset:
    name: str
    x_train: np.ndarray  # uint8 (N, H, W, C)
    y_train: np.ndarray  # int64 (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...] = field(default=())

    def __post_init__(self):
        validate_arrays(self.x_train, self.y_train, self.x_test, self.y_test, self.classes, source=self.name)
        if not self.classes:
            object.__setattr__(self, "classes", tuple(str(i) for i in range(int(max(self.y_train.max(), self.y_test.max())) + 1)))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    @property
    def channels(self) -> int:
        return self.x_train.shape[3]

    def fingerprint(self) -> str:
        """sha256 over all arrays: artifacts record it so they are never reused on other data."""
        h = hashlib.sha256()
        for a in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    def summary(self) -> dict:
        return {"name": self.name, "train": len(self.y_train), "test": len(self.y_test),
                "image_shape": list(self.image_shape), "num_classes": self.num_classes, "fingerprint": self.fingerprint()}


def validate_arrays(x_train, y_train, x_test, y_test, classes=(), source="data") -> None:
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[3] not in (1, 3):
            shape = getattr(x, "shape", None)
            raise DataFormatError(f"{source}: x_{split} must be a uint8 array N×H×W×C with C = 1 or 3, got shape {shape}.")
        if x.dtype != np.uint8:
            raise DataFormatError(f"{source}: x_{split} must have dtype uint8 (0..255), got {x.dtype}.")
        if not isinstance(y, np.ndarray) or y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataFormatError(f"{source}: y_{split} must be a 1-D integer array, got {getattr(y, 'dtype', type(y))} "
                                  f"of shape {getattr(y, 'shape', None)}.")
        if len(x) != len(y):
            raise DataFormatError(f"{source}: x_{split} has {len(x)} images but y_{split} has {len(y)} labels.")
        if len(y) == 0:
            raise DataFormatError(f"{source}: the {split} split is empty.")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataFormatError(f"{source}: train images are {x_train.shape[1:]} but test images are {x_test.shape[1:]}.")
    k = len(classes) if len(classes) else int(max(y_train.max(), y_test.max())) + 1
    for split, y in (("train", y_train), ("test", y_test)):
        if y.min() < 0 or y.max() >= k:
            raise DataFormatError(f"{source}: y_{split} labels must lie in 0..{k - 1} ({k} classes), "
                                  f"found {int(y.min())}..{int(y.max())}.")
    if k < 2:
        raise DataFormatError(f"{source}: need at least 2 classes, found {k}.")


def _make(name, x_train, y_train, x_test, y_test, classes=()) -> ImageDataset:
    return ImageDataset(name, x_train, np.asarray(y_train).astype(np.int64), x_test,
                        np.asarray(y_test).astype(np.int64), tuple(str(c) for c in classes))


def _resize_uint8(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of an N×H×W×C uint8 batch (used for digits and odd-sized images)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(x).permute(0, 3, 1, 2).float()
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return t.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


# ---------------------------------------------------------------- sources

DIGITS_SPLIT_SEED = 20231001  # fixed: the train/test split of the default never changes


def load_digits(image_size: int = 32, test_fraction: float = 0.2) -> ImageDataset:
    """scikit-learn's bundled 1,797 8×8 digits, upscaled to 32×32×1 so models and trigger sizes made
    for 32×32 images apply. A fixed, stratified, seeded split (1,437 train / 360 test)."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    d = sk_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # values 0..16 → 0..255
    x = _resize_uint8(x, image_size)
    idx_tr, idx_te = train_test_split(np.arange(len(x)), test_size=test_fraction, stratify=d.target,
                                      random_state=DIGITS_SPLIT_SEED)
    return _make("digits", x[idx_tr], d.target[idx_tr], x[idx_te], d.target[idx_te], [str(c) for c in range(10)])


def _missing(name: str, root: Path, how: str) -> DataNotFoundError:
    return DataNotFoundError(f"{name} was not found in {root}. {how} "
                             f"Or pass download=True (needs internet) to fetch it into {root}.")


def _torchvision(name: str, data_root: Path, download: bool, image_size: int | None) -> ImageDataset:
    import torchvision.datasets as tvd

    spec = {
        "cifar10": (tvd.CIFAR10, "the 'cifar-10-batches-py' folder (python version from https://www.cs.toronto.edu/~kriz/cifar.html)"),
        "mnist": (tvd.MNIST, "the 'MNIST/raw' files"),
        "fashion_mnist": (tvd.FashionMNIST, "the 'FashionMNIST/raw' files"),
        "gtsrb": (tvd.GTSRB, "the 'gtsrb' folder as torchvision's GTSRB class lays it out"),
    }
    cls, layout = spec[name]
    if not data_root.is_dir() and not download:
        raise _missing(name, data_root, f"The folder does not exist; create it and put {layout} in it.")
    splits = []
    for train in (True, False):
        kw = {"split": "train" if train else "test"} if name == "gtsrb" else {"train": train}
        try:
            ds = cls(root=str(data_root), download=download, **kw)
        except RuntimeError as exc:
            raise _missing(name, data_root, f"Put {layout} there.") from exc
        if name == "gtsrb":  # variable-size PIL images: resize each to a square
            size = image_size or 32
            xs, ys = [], []
            for img, label in ds:
                xs.append(np.asarray(img.convert("RGB").resize((size, size))))
                ys.append(label)
            x, y = np.stack(xs).astype(np.uint8), np.asarray(ys)
        else:
            x = np.asarray(ds.data)
            x = x[..., None] if x.ndim == 3 else x
            y = np.asarray(ds.targets)
            if image_size and image_size != x.shape[1]:
                x = _resize_uint8(x, image_size)
        splits.append((x, y))
        classes = getattr(ds, "classes", None) or [str(i) for i in range(43)]
    (xtr, ytr), (xte, yte) = splits
    return _make(name, xtr, ytr, xte, yte, classes)


DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # `apt-get install dataset-fashion-mnist`
FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                       "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")


def read_idx(path: Path) -> np.ndarray:
    """An idx file (the MNIST family's format, gzipped or not) as a uint8 array of its dimensions."""
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise DataFormatError(f"{path} is not an idx file of unsigned bytes (magic {raw[:4].hex()}).")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataFormatError(f"{path} holds {body.size} bytes of data but its header says {dims}.")
    return body.reshape(dims).copy()  # writable, as torch.from_numpy expects


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def fashion_mnist_folder(data_root: Path) -> Path | None:
    """The first folder holding the four Fashion-MNIST idx files: `data_root`, torchvision's
    `data_root/FashionMNIST/raw`, then Debian's package folder."""
    for folder in (data_root, data_root / "FashionMNIST" / "raw", DEBIAN_FASHION_MNIST):
        if all(_idx_file(folder, stem) for pair in FASHION_MNIST_FILES.values() for stem in pair):
            return folder
    return None


def load_fashion_mnist(data_root: str | Path = "data", download: bool = False,
                       image_size: int | None = None) -> ImageDataset:
    """Fashion-MNIST (60,000 / 10,000 28×28×1 images) from its idx files, offline: in `data_root`
    (flat or torchvision's layout) or, when it has none, Debian's `dataset-fashion-mnist` package."""
    data_root = Path(data_root)
    folder = fashion_mnist_folder(data_root)
    if folder is None:
        if download:
            return _torchvision("fashion_mnist", data_root, download, image_size)
        raise DataNotFoundError(
            f"fashion_mnist was not found in {data_root} nor in {DEBIAN_FASHION_MNIST}. Install Debian's package "
            f"(apt-get install dataset-fashion-mnist), or put the four idx files (train-images-idx3-ubyte.gz, ...) "
            f"in {data_root}, or pass download=True (needs internet) to fetch them into {data_root}.")
    arrays = []
    for images, labels in FASHION_MNIST_FILES.values():
        x, y = read_idx(_idx_file(folder, images))[..., None], read_idx(_idx_file(folder, labels))
        if image_size and image_size != x.shape[1]:
            x = _resize_uint8(x, image_size)
        arrays += [x, y]
    return _make("fashion_mnist", *arrays, FASHION_MNIST_CLASSES)


def check_sizes(train_size: int | None, test_size: int | None, n_train: int | None = None,
                n_test: int | None = None) -> None:
    """`train_size` / `test_size` are None or positive integers, at most the split's size when known."""
    for name, size, n in (("train_size", train_size, n_train), ("test_size", test_size, n_test)):
        ok = size is None or (isinstance(size, int) and not isinstance(size, bool) and size >= 1
                              and (n is None or size <= n))
        if not ok:
            bound = f"in [1, {n}]" if n is not None else "≥ 1"
            raise ConfigError(f"{name} must be None (every image) or an integer {bound}, got {size!r}.")


def first(ds: ImageDataset, train_size: int | None = None, test_size: int | None = None) -> ImageDataset:
    """The dataset cut to its first `train_size` training and `test_size` test images (None: all),
    in their stored order, as the CIFAR-10 subset is cut."""
    check_sizes(train_size, test_size, len(ds.y_train), len(ds.y_test))
    if train_size is None and test_size is None:
        return ds
    ntr = len(ds.y_train) if train_size is None else train_size
    nte = len(ds.y_test) if test_size is None else test_size
    return ImageDataset(ds.name, ds.x_train[:ntr], ds.y_train[:ntr], ds.x_test[:nte], ds.y_test[:nte], ds.classes)


def load_npz(path: str | Path) -> ImageDataset:
    """A user's arrays: x_train, y_train, x_test, y_test (uint8 N×H×W×C, integer labels), optional classes."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"npz dataset file {path} does not exist; set data_root to the path of your .npz file.")
    from .runio import load_arrays

    z = load_arrays(path)
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in z]
    if missing:
        raise DataFormatError(f"{path} lacks the arrays {missing}; an npz dataset needs x_train, y_train, x_test, "
                              f"y_test (and optionally classes). It has {sorted(z)}.")
    for key in ("x_train", "x_test"):  # accept N×H×W grayscale
        if z[key].ndim == 3:
            z[key] = z[key][..., None]
    classes = tuple(str(c) for c in z["classes"]) if "classes" in z else ()
    validate_arrays(z["x_train"], z["y_train"], z["x_test"], z["y_test"], classes, source=str(path))
    return _make(path.stem, z["x_train"], z["y_train"], z["x_test"], z["y_test"], classes)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif", ".webp", ".tif", ".tiff"}


def load_folder(root: str | Path, image_size: int = 32) -> ImageDataset:
    """ImageFolder layout: root/train/<class>/*.png and root/test/<class>/*.png; images are resized
    to image_size×image_size; grayscale stays 1 channel only if every image is grayscale."""
    from PIL import Image

    root = Path(root)
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DataNotFoundError(f"folder dataset {root} needs {root / split}/<class name>/<images>; it is missing.")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DataFormatError(f"{root / 'train'} must hold one sub-folder per class (at least 2), found {classes}.")
    images, labels = {}, {}
    for split in ("train", "test"):
        xs, ys = [], []
        for k, c in enumerate(classes):
            for f in sorted((root / split / c).glob("*")):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    xs.append(Image.open(f))
                    ys.append(k)
        if not xs:
            raise DataFormatError(f"{root / split} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
        images[split], labels[split] = xs, np.asarray(ys)
    gray = all(im.mode in ("L", "1", "I;16", "I") for ims in images.values() for im in ims)
    mode = "L" if gray else "RGB"
    arrays = {}
    for split, ims in images.items():
        x = np.stack([np.asarray(im.convert(mode).resize((image_size, image_size))) for im in ims]).astype(np.uint8)
        arrays[split] = x[..., None] if gray else x
    return _make(root.name, arrays["train"], labels["train"], arrays["test"], labels["test"], classes)


DATASETS = ("digits", "cifar10", "gtsrb", "mnist", "fashion_mnist", "npz", "folder")


def load_dataset(name: str = "digits", data_root: str | Path = "data", download: bool = False,
                 image_size: int | None = None, train_size: int | None = None,
                 test_size: int | None = None) -> ImageDataset:
    """Load a dataset by name. `data_root` is the folder for torchvision sets and `folder`, and the
    .npz file itself for `npz`. Nothing is downloaded unless download=True. `train_size` /
    `test_size` keep the first images of each split (None: all)."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.")
    check_sizes(train_size, test_size)
    if name == "digits":
        ds = load_digits(image_size or 32)
    elif name == "npz":
        ds = load_npz(data_root)
    elif name == "folder":
        ds = load_folder(data_root, image_size or 32)
    elif name == "fashion_mnist":
        ds = load_fashion_mnist(data_root, download, image_size)
    else:
        ds = _torchvision(name, Path(data_root), download, image_size)
    return first(ds, train_size, test_size)
