"""engine.data against real files: tiny datasets written in each format's real on-disk layout, loaded
through torchvision's own classes. Never touches the network (download=False throughout)."""

import json
import pickle
import subprocess
import sys
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from torchvision.datasets import CIFAR10, CIFAR100, MNIST, SVHN, FashionMNIST

from engine.data import (DATASET_NAMES, DATASETS, Dataset, DatasetUnavailable, default_data_dir,
                         load_dataset)

N_TRAIN, N_TEST = 20, 10


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """Back from [0, 1] floats to the uint8 values on disk (exact: v/255*255 rounds to v)."""
    return (x * 255).round().to(torch.uint8)


def _check_common(ds: Dataset, name: str):
    c, h, w = DATASETS[name].shape
    assert ds.x_train.dtype == ds.x_test.dtype == torch.float32
    assert ds.y_train.dtype == ds.y_test.dtype == torch.int64
    assert ds.x_train.shape[1:] == ds.x_test.shape[1:] == (c, h, w)
    assert ds.in_channels == c and ds.image_size == h
    assert ds.num_classes == DATASETS[name].num_classes == len(ds.class_names)
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert len(ds.mean) == len(ds.std) == c
    want_mean = ds.x_train.transpose(0, 1).reshape(c, -1).double().mean(1)
    want_std = ds.x_train.transpose(0, 1).reshape(c, -1).double().std(1, correction=0)
    assert torch.allclose(torch.tensor(ds.mean, dtype=torch.float64), want_mean, atol=1e-5)
    assert torch.allclose(torch.tensor(ds.std, dtype=torch.float64), want_std, atol=1e-5)


# --- digits (bundled with scikit-learn) ----------------------------------------------------------

def test_digits_shapes_split_and_range():
    ds = load_dataset("digits")
    _check_common(ds, "digits")
    assert ds.x_train.shape == (1347, 1, 8, 8) and ds.x_test.shape == (450, 1, 8, 8)
    assert ds.y_train.shape == (1347,) and ds.y_test.shape == (450,)
    assert ds.num_classes == 10 and ds.class_names == [str(d) for d in range(10)]
    assert ds.x_train.max() == 1.0  # 16/16: the full range is used
    # values are k/16 exactly
    assert torch.equal(ds.x_train * 16, (ds.x_train * 16).round())


def test_digits_split_is_stratified():
    ds = load_dataset("digits")
    train_counts = torch.bincount(ds.y_train, minlength=10)
    test_counts = torch.bincount(ds.y_test, minlength=10)
    share = test_counts.double() / (train_counts + test_counts).double()
    assert (share - 0.25).abs().max() < 0.02, share


def test_digits_is_deterministic_and_safe_to_mutate():
    a = load_dataset("digits")
    a.x_train.zero_()  # a caller scribbling on its copy must not leak into the next load
    a.y_test.fill_(3)
    b, c = load_dataset("digits"), load_dataset("digits")
    assert torch.equal(b.x_train, c.x_train) and torch.equal(b.y_train, c.y_train)
    assert torch.equal(b.x_test, c.x_test) and torch.equal(b.y_test, c.y_test)
    assert b.x_train.max() == 1.0 and len(b.y_test.unique()) == 10
    assert b.mean == c.mean and b.std == c.std


def test_dataset_to_moves_every_tensor():
    ds = load_dataset("digits").to("cpu")
    assert isinstance(ds, Dataset)
    assert all(t.device.type == "cpu" for t in (ds.x_train, ds.y_train, ds.x_test, ds.y_test))
    assert ds.num_classes == 10 and ds.in_channels == 1 and ds.image_size == 8


# --- MNIST / Fashion-MNIST: uncompressed IDX files in <root>/<ClassName>/raw/ ----------------------

def _write_idx(root, folder, x_train, y_train, x_test, y_test):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for split, x, y in (("train", x_train, y_train), ("t10k", x_test, y_test)):
        # IDX: big-endian magic (0x0803 = ubyte, 3 dims / 0x0801 = ubyte, 1 dim), then each dim as uint32
        (raw / f"{split}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, *x.shape) + x.tobytes())
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, len(y)) + y.tobytes())


@pytest.mark.parametrize("name, folder, tv_class", [("mnist", "MNIST", MNIST),
                                                     ("fashion-mnist", "FashionMNIST", FashionMNIST)])
def test_mnist_family_round_trip(tmp_path, name, folder, tv_class):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8)
    x_train[0] = 0
    x_train[1] = 255  # both ends of the range
    y_train = (np.arange(N_TRAIN) % 10).astype(np.uint8)
    y_test = rng.integers(0, 10, N_TEST, dtype=np.uint8)
    _write_idx(tmp_path, folder, x_train, y_train, x_test, y_test)

    ds = load_dataset(name, data_dir=tmp_path, download=False)
    _check_common(ds, name)
    assert torch.equal(_pixels(ds.x_train), torch.from_numpy(x_train).unsqueeze(1))
    assert torch.equal(_pixels(ds.x_test), torch.from_numpy(x_test).unsqueeze(1))
    assert torch.equal(ds.y_train, torch.from_numpy(y_train).long())
    assert torch.equal(ds.y_test, torch.from_numpy(y_test).long())
    assert ds.class_names == list(tv_class.classes)


def test_corrupt_mnist_file_is_unavailable_not_a_traceback(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in DATASETS["mnist"].files:
        (tmp_path / f).write_bytes(b"not an idx file")
    with pytest.raises(DatasetUnavailable, match="train-images-idx3-ubyte"):
        load_dataset("mnist", data_dir=tmp_path)


# --- CIFAR-10 / CIFAR-100: pickled batches --------------------------------------------------------
# The real batches are Python 2 pickles; torchvision loads them with encoding="latin1", under which
# their byte-string keys (b"data", b"labels", ...) come back as str. Pickling str keys from Python 3
# therefore gives torchvision exactly what it sees with the real files.

def _cifar_rows(x: np.ndarray) -> np.ndarray:
    """(N, 3, 32, 32) -> (N, 3072): the R plane, then G, then B, each 32x32 row-major."""
    return np.ascontiguousarray(x.reshape(len(x), 3072))


def _pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _write_cifar10(root, x_train, y_train, x_test, y_test, names):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    for i, (xb, yb) in enumerate(zip(np.array_split(x_train, 5), np.array_split(y_train, 5)), start=1):
        _pickle(folder / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5",
                                             "data": _cifar_rows(xb), "labels": yb.tolist()})
    _pickle(folder / "test_batch", {"batch_label": "testing batch 1 of 1",
                                    "data": _cifar_rows(x_test), "labels": y_test.tolist()})
    _pickle(folder / "batches.meta", {"label_names": names, "num_cases_per_batch": len(x_train) // 5,
                                      "num_vis": 3072})


def _write_cifar100(root, x_train, y_train, x_test, y_test, names):
    folder = root / "cifar-100-python"
    folder.mkdir()
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        _pickle(folder / split, {"data": _cifar_rows(x), "fine_labels": y.tolist(),
                                 "coarse_labels": (y // 5).tolist()})
    _pickle(folder / "meta", {"fine_label_names": names, "coarse_label_names": [f"c{i}" for i in range(20)]})


CIFARS = [("cifar10", 10, _write_cifar10, CIFAR10), ("cifar100", 100, _write_cifar100, CIFAR100)]


def _random_rgb(rng, n):
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


@pytest.mark.parametrize("name, k, write, _", CIFARS)
def test_cifar_round_trip(tmp_path, name, k, write, _):
    rng = np.random.default_rng(1)
    x_train, x_test = _random_rgb(rng, N_TRAIN), _random_rgb(rng, N_TEST)
    x_train[0, 0], x_train[0, 1], x_train[0, 2] = 255, 128, 0  # a known colour: checks plane order
    y_train, y_test = rng.integers(0, k, N_TRAIN), rng.integers(0, k, N_TEST)
    names = [f"class_{i}" for i in range(k)]
    write(tmp_path, x_train, y_train, x_test, y_test, names)

    ds = load_dataset(name, data_dir=tmp_path, download=False, verify_checksums=False)
    _check_common(ds, name)
    assert ds.x_train.is_contiguous() and ds.x_test.is_contiguous()
    assert torch.equal(_pixels(ds.x_train), torch.from_numpy(x_train))
    assert torch.equal(_pixels(ds.x_test), torch.from_numpy(x_test))
    assert torch.equal(ds.x_train[0, :, 5, 7], torch.tensor([255, 128, 0]) / 255)
    assert torch.equal(ds.y_train, torch.from_numpy(y_train)) and torch.equal(ds.y_test, torch.from_numpy(y_test))
    assert ds.class_names == names


@pytest.mark.parametrize("name, k, write, tv_class", CIFARS)
def test_cifar_checksums_reject_tiny_files(tmp_path, name, k, write, tv_class):
    rng = np.random.default_rng(2)
    y = np.zeros(N_TRAIN, dtype=np.int64)
    write(tmp_path, _random_rgb(rng, N_TRAIN), y, _random_rgb(rng, N_TEST), y[:N_TEST], [str(i) for i in range(k)])
    with pytest.raises(DatasetUnavailable) as info:
        load_dataset(name, data_dir=tmp_path, download=False)  # verify_checksums=True is the default
    assert str(tmp_path) in str(info.value) and "verify_checksums=False" in str(info.value)
    # the registry names the same files torchvision looks for
    expected = [f"{tv_class.base_folder}/{f}" for f, _ in tv_class.train_list + tv_class.test_list]
    assert list(DATASETS[name].files) == expected + [f"{tv_class.base_folder}/{tv_class.meta['filename']}"]


# --- SVHN: MATLAB files, X (32, 32, 3, N), y (N, 1) with 10 meaning digit 0 ---------------------

def test_svhn_round_trip_and_label_10_is_zero(tmp_path):
    rng = np.random.default_rng(3)
    data = {}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        x = _random_rgb(rng, n)
        digits = np.arange(n) % 10
        y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)  # SVHN stores 0 as 10
        scipy.io.savemat(tmp_path / f"{split}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": y})
        data[split] = x, digits

    with pytest.raises(DatasetUnavailable, match="verify_checksums=False"):
        load_dataset("svhn", data_dir=tmp_path)
    ds = load_dataset("svhn", data_dir=tmp_path, download=False, verify_checksums=False)
    _check_common(ds, "svhn")
    assert torch.equal(_pixels(ds.x_train), torch.from_numpy(data["train"][0]))
    assert torch.equal(_pixels(ds.x_test), torch.from_numpy(data["test"][0]))
    assert torch.equal(ds.y_train, torch.from_numpy(data["train"][1]))
    assert torch.equal(ds.y_test, torch.from_numpy(data["test"][1]))
    assert int(ds.y_train.min()) == 0 and int(ds.y_train.max()) == 9
    assert ds.class_names == [str(d) for d in range(10)]
    assert [f"{s}_32x32.mat" for s in ("train", "test")] == [SVHN.split_list[s][1] for s in ("train", "test")]


# --- errors and defaults ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", [n for n in DATASET_NAMES if n != "digits"])
def test_missing_files_raise_dataset_unavailable(tmp_path, monkeypatch, name):
    from engine import data

    monkeypatch.setattr(data, "SYSTEM_COPIES", {})  # as on a machine without Debian's package
    with pytest.raises(DatasetUnavailable) as info:
        load_dataset(name, data_dir=tmp_path, download=False, verify_checksums=False)
    msg = str(info.value)
    assert str(tmp_path) in msg and name in msg and "SIMPLEX_DATA_DIR" in msg
    for f in DATASETS[name].files:
        assert str(tmp_path / f) in msg


def test_data_dir_defaults_to_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMPLEX_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    with pytest.raises(DatasetUnavailable, match="train-images-idx3-ubyte") as info:
        load_dataset("mnist")
    assert str(tmp_path) in str(info.value)
    monkeypatch.delenv("SIMPLEX_DATA_DIR")
    assert default_data_dir().parts[-3:] == (".cache", "simplex-workbench", "data")


def test_unknown_name_lists_allowed_values():
    with pytest.raises(ValueError) as info:
        load_dataset("imagenet", download=False)
    msg = str(info.value)
    assert "dataset" in msg and "imagenet" in msg
    assert all(n in msg for n in DATASET_NAMES)
    assert DATASET_NAMES == ("digits", "mnist", "fashion-mnist", "svhn", "cifar10", "cifar100")


def test_the_command_line_and_the_engine_import_neither_torchvision_nor_scikit_learn():
    """They cost over a second and hundreds of MB per process; only loading a dataset needs them."""
    code = ("import sys, engine.__main__, engine.train, engine.jobs, cache; "
            "print(sorted(m for m in ('torchvision', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]", out.stderr


# --- a system package's copy (Debian's dataset-fashion-mnist) -----------------------------------------

def _fashion_arrays():
    rng = np.random.default_rng(1)
    return (rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8), (np.arange(N_TRAIN) % 10).astype(np.uint8),
            rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8), rng.integers(0, 10, N_TEST, dtype=np.uint8))


@pytest.fixture
def system_copy(tmp_path, monkeypatch):
    """A package folder laid out as Debian's: the four official IDX files, gzipped, side by side."""
    import gzip

    from engine import data

    folder = tmp_path / "usr-share-datasets-fashion-mnist"
    staging = tmp_path / "staging"
    arrays = _fashion_arrays()
    _write_idx(staging, "FashionMNIST", *arrays)
    folder.mkdir()
    for f in (staging / "FashionMNIST" / "raw").iterdir():
        (folder / (f.name + ".gz")).write_bytes(gzip.compress(f.read_bytes()))
    monkeypatch.setitem(data.SYSTEM_COPIES, "fashion-mnist", data.SystemCopy("dataset-fashion-mnist", folder))
    return folder, arrays


def test_a_system_copy_is_unpacked_once_into_the_data_dir(tmp_path, system_copy):
    from engine.data import dataset_status

    folder, (x_train, y_train, x_test, y_test) = system_copy
    data_dir = tmp_path / "data"
    status = dataset_status("fashion-mnist", data_dir)
    assert status["ready"] and "dataset-fashion-mnist" in status["source"] and str(folder) in status["looked_in"]
    ds = load_dataset("fashion-mnist", data_dir=data_dir)
    assert torch.equal(_pixels(ds.x_train), torch.from_numpy(x_train).unsqueeze(1))
    assert torch.equal(ds.y_test, torch.from_numpy(y_test).long()) and ds.class_names == list(FashionMNIST.classes)
    assert sorted(p.name for p in (data_dir / "FashionMNIST" / "raw").iterdir()) == sorted(
        Path(f).name for f in DATASETS["fashion-mnist"].files)  # no partial files beside them
    assert dataset_status("fashion-mnist", data_dir)["source"] == str(data_dir)
    for f in folder.iterdir():
        f.unlink()  # the package removed: the unpacked copy is enough
    assert torch.equal(load_dataset("fashion-mnist", data_dir=data_dir).x_test, ds.x_test)


def test_a_system_copy_that_cannot_be_unpacked_is_a_clear_message(tmp_path, system_copy):
    folder, _ = system_copy
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(DatasetUnavailable, match=r"could not unpack .* SIMPLEX_DATA_DIR"):
        load_dataset("fashion-mnist", data_dir=tmp_path / "a-file" / "data")  # not a folder
    packed = folder / "train-images-idx3-ubyte.gz"
    packed.write_bytes(packed.read_bytes()[:200])  # a damaged package file
    with pytest.raises(DatasetUnavailable, match="reinstall"):
        load_dataset("fashion-mnist", data_dir=tmp_path / "data")
    assert not list((tmp_path / "data").rglob("*.part-*"))


def test_the_data_command_lists_every_dataset_with_where_it_looked(tmp_path, capsys):
    from engine.__main__ import main

    assert main(["data", "--data-dir", str(tmp_path)]) == 0
    listed = {d["dataset"]: d for d in json.loads(capsys.readouterr().out)}
    assert list(listed) == list(DATASET_NAMES)
    assert listed["digits"]["ready"] and not listed["mnist"]["ready"]
    assert str(tmp_path) in listed["mnist"]["looked_in"] and "--download" in listed["mnist"]["how"]


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed (make test installs it where apt is)")
def test_the_real_fashion_mnist_of_the_debian_package(tmp_path):
    ds = load_dataset("fashion-mnist", data_dir=tmp_path)
    assert ds.x_train.shape == (60_000, 1, 28, 28) and ds.x_test.shape == (10_000, 1, 28, 28)
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10 and torch.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.class_names[0] == "T-shirt/top" and 0.28 < ds.mean[0] < 0.29


@pytest.mark.parametrize("name, tv_class", [("fashion-mnist", FashionMNIST), ("mnist", MNIST)])
def test_the_registry_names_classes_as_loading_does(name, tv_class):
    assert list(DATASETS[name].class_names) == list(tv_class.classes)
    assert DATASETS["cifar100"].class_names == ()  # only its meta file says
