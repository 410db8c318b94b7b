"""Datasets: the original pickles, ImageNet16-120 label filtering, seeded probe batches."""

import pickle

import numpy as np
import pytest
import torch

from greenmachine.probing.datasets import load_images, probe_batch
from greenmachine.errors import GreenmachineError


@pytest.mark.parametrize("dataset,classes,res", [("cifar10", 10, 32), ("cifar100", 100, 32), ("ImageNet16-120", 120, 16)])
def test_real_files_load(data_dir, dataset, classes, res):
    x, y = load_images(str(data_dir), dataset)
    assert x.dtype == np.uint8 and x.shape[1:] == (3, res, res)
    assert y.min() >= 0 and y.max() < classes
    if dataset == "ImageNet16-120":
        assert len(x) == 106  # the images whose label is 1..120
    else:
        assert len(x) == 960
    if dataset == "cifar10":
        assert len(np.unique(y)) == 10


def test_probe_batch_is_seeded_and_normalised(data_dir):
    a, la = probe_batch(str(data_dir), "cifar10", 64, seed=3)
    b, lb = probe_batch(str(data_dir), "cifar10", 64, seed=3)
    c, _ = probe_batch(str(data_dir), "cifar10", 64, seed=4)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(a, c)
    assert a.shape == (64, 3, 32, 32)
    assert abs(float(a.mean())) < 0.5 and 0.5 < float(a.std()) < 1.5


def test_any_number_of_batch_files(tmp_path, data_dir):
    """A real installation has data_batch_1..5: split the subset in two files and read both."""
    with open(data_dir / "images/cifar-10-batches-py/data_batch_1", "rb") as f:
        obj = pickle.load(f, encoding="latin1")
    folder = tmp_path / "images" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for k, part in enumerate((slice(0, 500), slice(500, None)), start=1):
        with open(folder / f"data_batch_{k}", "wb") as f:
            pickle.dump({"data": obj["data"][part], "labels": obj["labels"][part]}, f)
    x, y = load_images(str(tmp_path), "cifar10")
    ref_x, ref_y = load_images(str(data_dir), "cifar10")
    assert np.array_equal(x, ref_x) and np.array_equal(y, ref_y)


def test_errors(tmp_path, data_dir):
    with pytest.raises(GreenmachineError, match="data_batch_"):
        load_images(str(tmp_path), "cifar10")
    with pytest.raises(GreenmachineError, match="only 106"):
        probe_batch(str(data_dir), "ImageNet16-120", 128, 0)
    with pytest.raises(GreenmachineError, match="unknown dataset"):
        probe_batch(str(data_dir), "mnist", 8, 0)
    folder = tmp_path / "images" / "cifar-100-python"
    folder.mkdir(parents=True)
    (folder / "train").write_bytes(b"not a pickle")
    with pytest.raises(GreenmachineError, match="cannot read"):
        load_images(str(tmp_path), "cifar100")
