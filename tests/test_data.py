import numpy as np
import pytest

from vablib import data
from vablib.errors import ConfigError, DataFormatError, DataNotFoundError


def test_digits_default_shape_split_and_determinism(digits):
    assert digits.x_train.shape == (1437, 32, 32, 1) and digits.x_test.shape == (360, 32, 32, 1)
    assert digits.x_train.dtype == np.uint8 and digits.y_train.dtype == np.int64
    assert digits.num_classes == 10 and digits.x_train.max() > 200
    assert set(np.unique(digits.y_test)) == set(range(10))
    again = data.load_digits()
    assert digits.fingerprint() == again.fingerprint()
    np.testing.assert_array_equal(digits.y_train, again.y_train)


def test_npz_roundtrip(tmp_path, tiny_arrays):
    p = tmp_path / "mine.npz"
    np.savez(p, **tiny_arrays, classes=np.array(["a", "b", "c", "d"]))
    ds = data.load_dataset("npz", p)
    assert ds.classes == ("a", "b", "c", "d") and ds.image_shape == (8, 8, 3)
    np.testing.assert_array_equal(ds.x_train, tiny_arrays["x_train"])


def test_npz_grayscale_without_channel_axis(tmp_path, tiny_arrays):
    arrays = {**tiny_arrays, "x_train": tiny_arrays["x_train"][..., 0], "x_test": tiny_arrays["x_test"][..., 0]}
    np.savez(tmp_path / "g.npz", **arrays)
    assert data.load_npz(tmp_path / "g.npz").channels == 1


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("y_test"), "lacks the arrays"),
    (lambda a: a.__setitem__("x_train", a["x_train"].astype(np.float32)), "dtype uint8"),
    (lambda a: a.__setitem__("x_train", a["x_train"][:, :, :, :2]), "C = 1 or 3"),
    (lambda a: a.__setitem__("x_test", a["x_test"][:, :4]), "train images are"),
    (lambda a: a.__setitem__("y_train", a["y_train"][:5]), "labels"),
    (lambda a: a.__setitem__("y_train", a["y_train"] + 10), "labels must lie in"),
    (lambda a: a.__setitem__("y_train", -a["y_train"] - 1), "labels must lie in"),
    (lambda a: a.__setitem__("y_test", a["y_test"].astype(np.float32)), "integer array"),
])
def test_npz_bad_inputs(tmp_path, tiny_arrays, change, message):
    change(tiny_arrays)
    np.savez(tmp_path / "bad.npz", **tiny_arrays, classes=np.array(["a", "b", "c", "d"]))
    with pytest.raises(DataFormatError, match=message):
        data.load_dataset("npz", tmp_path / "bad.npz")


def test_npz_labels_beyond_declared_classes(tmp_path, tiny_arrays):
    np.savez(tmp_path / "c.npz", **tiny_arrays, classes=np.array(["a", "b"]))
    with pytest.raises(DataFormatError, match=r"0\.\.1 \(2 classes\)"):
        data.load_npz(tmp_path / "c.npz")


def test_npz_with_pickled_objects_is_refused(tmp_path, tiny_arrays):
    np.savez(tmp_path / "p.npz", **tiny_arrays, classes=np.array([object(), 1], dtype=object))
    with pytest.raises(DataFormatError, match="pickled"):
        data.load_npz(tmp_path / "p.npz")


def test_npz_missing_and_corrupted(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        data.load_dataset("npz", tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataFormatError, match="not a readable"):
        data.load_npz(tmp_path / "junk.npz")


def test_real_cifar_subset_loads_as_npz(cifar_subset_path):
    ds = data.load_dataset("npz", cifar_subset_path)
    assert ds.x_train.shape == (5170, 32, 32, 3) and ds.x_test.shape == (1017, 32, 32, 3)
    assert ds.classes[0] == "airplane" and ds.num_classes == 10


@pytest.mark.parametrize("name", ["cifar10", "mnist", "fashion_mnist", "gtsrb"])
def test_torchvision_sets_missing_give_one_clear_error_and_never_download(tmp_path, monkeypatch, name):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")  # Fashion-MNIST's fallback
    root = tmp_path / "no-data-here"
    with pytest.raises(DataNotFoundError, match=str(root).replace("\\", "\\\\")) as exc:
        data.load_dataset(name, root)
    assert "download=True" in str(exc.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError, match="download=True"):
        data.load_dataset(name, empty)
    assert not any(empty.rglob("*.gz")) and not any(empty.rglob("*.tar*"))


def test_unknown_dataset():
    with pytest.raises(ConfigError, match="digits, cifar10"):
        data.load_dataset("imagenet")


def _write_folder(root, mode="RGB", size=(10, 12)):
    from PIL import Image

    rng = np.random.default_rng(1)
    for split, n in (("train", 3), ("test", 2)):
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                shape = size[::-1] + ((3,) if mode == "RGB" else ())
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / split / c / f"{i}.png")


def test_folder_dataset(tmp_path):
    _write_folder(tmp_path / "pets")
    ds = data.load_dataset("folder", tmp_path / "pets")
    assert ds.classes == ("cat", "dog") and ds.x_train.shape == (6, 32, 32, 3) and len(ds.y_test) == 4
    assert list(ds.y_train) == [0, 0, 0, 1, 1, 1]


def test_folder_grayscale_stays_one_channel(tmp_path):
    _write_folder(tmp_path / "g", mode="L")
    assert data.load_folder(tmp_path / "g", image_size=16).x_train.shape == (6, 16, 16, 1)


def test_folder_missing_split(tmp_path):
    (tmp_path / "x" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match="test"):
        data.load_dataset("folder", tmp_path / "x")
