"""Dataset registry: every dataset the workbench trains on, loaded whole into memory as tensors.

All datasets come back the same way, as a ``Dataset`` of float32 NCHW images in [0, 1] plus int64
labels. Normalisation is *not* applied here: the model normalises inside itself with the ``mean`` and
``std`` recorded on the Dataset, so attacks keep working in plain pixel space, where an epsilon of
8/255 means what it says.

``digits`` ships with scikit-learn and needs nothing on disk. The others load through torchvision's own
dataset classes from ``data_dir`` (``$SIMPLEX_DATA_DIR``, else ``~/.cache/simplex-workbench/data``),
laid out exactly as torchvision expects; they touch the network only when ``download=True``. Where a
system package ships a dataset's official files (Debian's ``dataset-fashion-mnist``), they are unpacked
from there into ``data_dir`` once, when ``data_dir`` lacks them (``SYSTEM_COPIES``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class Dataset:
    name: str
    x_train: torch.Tensor  # float32 (N, C, H, W), values in [0, 1]
    y_train: torch.Tensor  # int64 (N,)
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    class_names: list[str]
    mean: tuple[float, ...]  # per-channel mean of x_train (the model normalises inside itself)
    std: tuple[float, ...]  # per-channel std of x_train

    @property
    def in_channels(self) -> int:
        return self.x_train.shape[1]

    @property
    def image_size(self) -> int:
        return self.x_train.shape[2]

    def to(self, device: torch.device | str) -> Dataset:
        return dataclasses.replace(self, x_train=self.x_train.to(device), y_train=self.y_train.to(device),
                                   x_test=self.x_test.to(device), y_test=self.y_test.to(device))


@dataclass(frozen=True)
class DatasetInfo:
    label: str  # human-readable name for the UI
    num_classes: int
    shape: tuple[int, int, int]  # (C, H, W) of one image
    files: tuple[str, ...]  # paths relative to data_dir that must exist; empty when bundled
    # as load_dataset names them (torchvision's names; () where only the files say, as CIFAR-100's meta)
    class_names: tuple[str, ...] = tuple(str(d) for d in range(10))
    train_size: int = 0  # training images: a batch cannot be larger


def _mnist_files(folder: str) -> tuple[str, ...]:
    # torchvision reads the *uncompressed* IDX files from <root>/<ClassName>/raw/ (the .gz are only the
    # download format) and wants all four present even when only one split is asked for.
    return tuple(f"{folder}/raw/{split}-{kind}" for split in ("train", "t10k")
                 for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"))


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo("Digits (scikit-learn, 8x8)", 10, (1, 8, 8), (), train_size=1347),
    "mnist": DatasetInfo("MNIST", 10, (1, 28, 28), _mnist_files("MNIST"),
                         ("0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six",
                          "7 - seven", "8 - eight", "9 - nine"), train_size=60_000),
    "fashion-mnist": DatasetInfo("Fashion-MNIST", 10, (1, 28, 28), _mnist_files("FashionMNIST"),
                                 ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                  "Sneaker", "Bag", "Ankle boot"), train_size=60_000),
    "svhn": DatasetInfo("SVHN", 10, (3, 32, 32), ("train_32x32.mat", "test_32x32.mat"), train_size=73_257),
    "cifar10": DatasetInfo("CIFAR-10", 10, (3, 32, 32),
                           tuple(f"cifar-10-batches-py/{f}" for f in
                                 [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]),
                           ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
                           train_size=50_000),
    "cifar100": DatasetInfo("CIFAR-100", 100, (3, 32, 32),
                            tuple(f"cifar-100-python/{f}" for f in ("train", "test", "meta")), (), train_size=50_000),
}
DATASET_NAMES = tuple(DATASETS)  # ("digits", "mnist", "fashion-mnist", "svhn", "cifar10", "cifar100")


@dataclass(frozen=True)
class SystemCopy:
    """A system package that installs a dataset's official files, each of ``DatasetInfo.files`` as its
    base name + ".gz" in ``folder`` (the download format torchvision would fetch)."""

    package: str
    folder: Path

    def sources(self, name: str) -> dict[str, Path]:
        return {rel: self.folder / (Path(rel).name + ".gz") for rel in DATASETS[name].files}

    def complete(self, name: str) -> bool:
        return all(p.is_file() for p in self.sources(name).values())


SYSTEM_COPIES: dict[str, SystemCopy] = {
    "fashion-mnist": SystemCopy("dataset-fashion-mnist", Path("/usr/share/datasets/fashion-mnist")),
}


class DatasetUnavailable(RuntimeError):
    """The dataset's files are missing or unreadable (and were not, or could not be, downloaded)."""


def default_data_dir() -> Path:
    env = os.environ.get("SIMPLEX_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "simplex-workbench" / "data"


def data_root(data_dir: str | Path | None) -> Path:
    """The folder datasets are read from: ``data_dir``, else ``default_data_dir()``."""
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


# -----------------------------------------------------------------------------
# Checksum-free torchvision classes.
# torchvision's CIFAR and SVHN classes md5-check every file against the official release, so a user's
# subset (or a test's tiny file) is rejected as "not found or corrupted". These subclasses keep the same
# file names but drop the checksums: torchvision's check_integrity(path, md5=None) then only checks that
# the file exists. Overriding _check_integrity alone would not do, because CIFAR's _load_meta checks the
# md5 of batches.meta / meta separately. MNIST needs none of this: torchvision never checksums raw files.

# torchvision and scikit-learn are imported where a dataset is loaded: together they cost over a
# second and hundreds of MB in every process, also in the commands that never load data.
@functools.lru_cache(maxsize=None)
def _torchvision_class(name: str, verify_checksums: bool):
    """The torchvision dataset class for ``name``; without checksums for CIFAR and SVHN unless asked."""
    from torchvision.datasets import CIFAR10, CIFAR100, MNIST, SVHN, FashionMNIST

    if name in ("mnist", "fashion-mnist"):
        return MNIST if name == "mnist" else FashionMNIST
    if name == "svhn":
        return SVHN if verify_checksums else type("SVHNUnverified", (SVHN,), {
            "split_list": {split: [url, filename, None] for split, (url, filename, _) in SVHN.split_list.items()}})
    base = {"cifar10": CIFAR10, "cifar100": CIFAR100}[name]
    return base if verify_checksums else type(f"{base.__name__}Unverified", (base,), {
        "train_list": [[f, None] for f, _ in base.train_list], "test_list": [[f, None] for f, _ in base.test_list],
        "meta": {**base.meta, "md5": None}})


# -----------------------------------------------------------------------------

def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = False,
                 verify_checksums: bool = True) -> Dataset:
    """Load a dataset by name as whole in-memory tensors. Raises DatasetUnavailable when its files
    are missing or unreadable, ValueError for an unknown name."""
    if name not in DATASETS:
        raise ValueError(f"dataset: unknown dataset {name!r}; allowed values: {', '.join(DATASET_NAMES)}")
    if name == "digits":
        x_train, y_train, x_test, y_test = (t.clone() for t in _digits_tensors())  # callers may mutate
        class_names = [str(d) for d in range(10)]
    else:
        root = data_root(data_dir)
        if not _files_present(name, root) and name in SYSTEM_COPIES and SYSTEM_COPIES[name].complete(name):
            _unpack_system_copy(name, root)
        x_train, y_train, x_test, y_test, class_names = _load_torchvision(name, root, download, verify_checksums)

    # per-channel statistics in one reduction over every axis but C; population std (correction=0)
    # because these describe the whole training set, not a sample drawn from it
    std, mean = torch.std_mean(x_train, dim=(0, 2, 3), correction=0)
    return Dataset(name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                   num_classes=DATASETS[name].num_classes, class_names=class_names,
                   mean=tuple(mean.tolist()), std=tuple(std.tolist()))


def _files_present(name: str, root: Path) -> bool:
    return all((root / f).is_file() for f in DATASETS[name].files)


def _unpack_system_copy(name: str, root: Path) -> None:
    """Decompress the system package's files into ``root`` in torchvision's layout. Each file is
    written beside its place and renamed into it, so a kill or a full disk leaves no partial file."""
    copy = SYSTEM_COPIES[name]
    for rel, source in copy.sources(name).items():
        target = root / rel
        if target.is_file():
            continue
        part = target.with_name(f"{target.name}.part-{os.getpid()}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with gzip.open(source, "rb") as packed, open(part, "wb") as out:
                shutil.copyfileobj(packed, out, 1 << 20)
            os.replace(part, target)
        except (OSError, EOFError) as exc:  # not writable, full, or a damaged package file
            with contextlib.suppress(OSError):
                part.unlink()
            raise DatasetUnavailable(
                f"Dataset {name!r}: could not unpack {source} (Debian package {copy.package}) into {target}: "
                f"{type(exc).__name__}: {exc}. Set SIMPLEX_DATA_DIR (or --data-dir) to a writable folder, or "
                f"reinstall the package (apt-get install --reinstall {copy.package}).") from exc


def dataset_status(name: str, data_dir: str | Path | None = None) -> dict[str, object]:
    """Whether ``name`` can be loaded without the network, where it was looked for, and how to get it:
    {"dataset", "label", "ready", "source", "looked_in", "how"}. Reads nothing but file names."""
    info = DATASETS[name]
    if not info.files:
        return {"dataset": name, "label": info.label, "ready": True, "source": "embedded (scikit-learn)",
                "looked_in": [], "how": ""}
    root = data_root(data_dir)
    copy = SYSTEM_COPIES.get(name)
    looked_in = [str(root)] + ([str(copy.folder)] if copy else [])
    if _files_present(name, root):
        source = str(root)
    elif copy is not None and copy.complete(name):
        source = f"{copy.folder} (Debian package {copy.package}), unpacked into {root} when first loaded"
    else:
        how = [f"put {', '.join(info.files)} under {root} (or point SIMPLEX_DATA_DIR / --data-dir at a folder "
               f"that holds them)"]
        if copy is not None:
            how.append(f"install Debian's {copy.package} (apt-get install {copy.package}; `make test` and "
                       f"`make run` do when apt is available)")
        how.append("or let torchvision download it (--download, or the download box on the Train page; needs "
                   "network access)")
        return {"dataset": name, "label": info.label, "ready": False, "source": None, "looked_in": looked_in,
                "how": "; ".join(how)}
    return {"dataset": name, "label": info.label, "ready": True, "source": source, "looked_in": looked_in, "how": ""}


@functools.lru_cache(maxsize=1)
def _digits_tensors() -> tuple[torch.Tensor, ...]:
    # scikit-learn bundles these 1,797 8x8 images (values 0..16), so this never needs the network.
    # A fixed stratified split keeps every run, and every test, on the same 1,347 / 450 images.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.from_numpy(digits.images).float().div_(16).unsqueeze(1)  # (N, 1, 8, 8)
    y = torch.from_numpy(digits.target).long()
    idx_train, idx_test = train_test_split(torch.arange(len(y)).numpy(), test_size=0.25,
                                           stratify=y.numpy(), random_state=0)
    idx_train, idx_test = torch.from_numpy(idx_train), torch.from_numpy(idx_test)
    return x[idx_train], y[idx_train], x[idx_test], y[idx_test]


def _load_torchvision(name: str, root: Path, download: bool, verify_checksums: bool):
    cls = _torchvision_class(name, verify_checksums)
    try:
        if name == "svhn":
            train, test = cls(root, split="train", download=download), cls(root, split="test", download=download)
        else:
            train, test = cls(root, train=True, download=download), cls(root, train=False, download=download)
        x_train, y_train = _to_tensors(train)
        x_test, y_test = _to_tensors(test)
    except Exception as e:  # noqa: BLE001 - whatever broke (missing, truncated, bad download), say it plainly
        raise DatasetUnavailable(_unavailable_message(name, root, download, verify_checksums, e)) from e
    class_names = [str(d) for d in range(10)] if name == "svhn" else list(train.classes)
    return x_train, y_train, x_test, y_test, class_names


def _to_tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
    # Take the arrays torchvision has already loaded and convert them in bulk: indexing the dataset
    # would build one PIL image per sample, which is slow and pointless here.
    from torchvision.datasets import CIFAR10, MNIST

    if isinstance(ds, MNIST):  # also FashionMNIST; .data is a uint8 tensor (N, 28, 28)
        x, y = ds.data.unsqueeze(1), ds.targets
    elif isinstance(ds, CIFAR10):  # also CIFAR100; .data is uint8 NHWC, .targets a list of ints
        x, y = torch.from_numpy(ds.data).permute(0, 3, 1, 2), torch.as_tensor(ds.targets)
    else:  # SVHN; .data is already uint8 NCHW, and torchvision has mapped label 10 to digit 0
        x, y = torch.from_numpy(ds.data), torch.from_numpy(ds.labels)
    return x.contiguous().float().div_(255), y.long().reshape(-1)  # reshape: SVHN squeezes N=1 to 0-d


def _unavailable_message(name: str, root: Path, download: bool, verify_checksums: bool, cause: Exception) -> str:
    files = [root / f for f in DATASETS[name].files]
    missing = [f for f in files if not f.is_file()]
    lines = [f"Dataset {name!r} ({DATASETS[name].label}) could not be loaded from {root}.",
             "Expected files:"] + [f"  {f}{'  (missing)' if f in missing else ''}" for f in files]
    if not missing and verify_checksums and name in ("svhn", "cifar10", "cifar100"):
        lines.append("All files exist, so they probably failed torchvision's md5 check (it expects the "
                     "official release); pass verify_checksums=False to load a subset or a re-packed copy.")
    lines.append(f"Fix: place the files there, set SIMPLEX_DATA_DIR to the folder that holds them"
                 f"{', or allow downloading (--download on the command line, the Download box in the app)' if not download else ''}.")
    lines.append(f"Cause: {type(cause).__name__}: {cause}")
    return "\n".join(lines)
