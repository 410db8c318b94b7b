"""Read the original CIFAR-10 / CIFAR-100 / ImageNet16 pickles and draw a seeded probe minibatch.

The files are read directly (no torchvision): the CIFAR "python version" pickles and the downsampled-ImageNet
pickles that NATS-Bench trains on. Any number of batch files and of images per file is accepted, so the same
code reads a small subset and the full sets. Normalisation constants are the ones NATS-Bench trains with.

The pickles are read with :func:`greenmachine.safepickle.safe_load` (a restricted unpickler: plain containers and
numpy arrays only), because a data folder is something a user hands over and a planted batch file must not run
code. :func:`images_digest` fingerprints the normalised minibatch a probe protocol draws, so that the probe cache
can never serve probes made on other images.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from greenmachine.errors import GreenmachineError
from greenmachine.safepickle import safe_load

# Bump when the way images become a probe minibatch changes (file order, label handling, the draw, the
# normalisation): it is hashed into images_digest, so probes cached under the old protocol are never reused.
DATA_PROTOCOL = 1


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    folder: str  # under DATA/images
    pattern: str  # glob of the training files inside the folder
    label_key: str
    num_classes: int
    resolution: int
    mean: tuple[float, float, float]  # in [0, 255], as in xautodl's get_datasets
    std: tuple[float, float, float]


DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec(
        "cifar10", "cifar-10-batches-py", "data_batch_*", "labels", 10, 32, (125.3, 123.0, 113.9), (63.0, 62.1, 66.7)
    ),
    "cifar100": DatasetSpec(
        "cifar100", "cifar-100-python", "train", "fine_labels", 100, 32, (129.3, 124.1, 112.4), (68.2, 65.4, 70.4)
    ),
    "ImageNet16-120": DatasetSpec(
        "ImageNet16-120",
        "ImageNet16",
        "train_data_batch_*",
        "labels",
        120,
        16,
        (122.68, 116.66, 104.01),
        (63.22, 61.26, 65.09),
    ),
}


def check_dataset(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise GreenmachineError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name]


def _unpickle(path: Path) -> dict:
    obj = safe_load(path, encoding="latin1", what="dataset file")
    if not isinstance(obj, dict) or "data" not in obj:
        raise GreenmachineError(f"dataset file {path} is not a CIFAR/ImageNet16 pickle (no 'data' key)")
    return obj


@lru_cache(maxsize=4)
def load_images(data_dir: str, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """All training images of ``dataset`` under ``data_dir/images`` as (uint8 N x 3 x R x R, int64 labels).

    ImageNet16-120 keeps labels 1..120 and shifts them to 0..119, as NATS-Bench does.
    """
    spec = check_dataset(dataset)
    folder = Path(data_dir) / "images" / spec.folder
    files = sorted(folder.glob(spec.pattern))
    if not files:
        raise GreenmachineError(
            f"no {dataset} training files: expected {folder / spec.pattern} (set --data-dir or GREENMACHINE_DATA)"
        )
    xs, ys = [], []
    for path in files:
        obj = _unpickle(path)
        if spec.label_key not in obj:
            raise GreenmachineError(f"dataset file {path} has no {spec.label_key!r} labels")
        data = np.asarray(obj["data"], dtype=np.uint8)
        labels = np.asarray(obj[spec.label_key], dtype=np.int64)
        r = spec.resolution
        if data.ndim != 2 or data.shape[1] != 3 * r * r or len(labels) != len(data):
            raise GreenmachineError(f"dataset file {path} does not hold {3 * r * r}-byte images with one label each")
        xs.append(data.reshape(-1, 3, r, r))
        ys.append(labels)
    x, y = np.concatenate(xs), np.concatenate(ys)
    if dataset == "ImageNet16-120":
        keep = (y >= 1) & (y <= 120)
        x, y = x[keep], y[keep] - 1
    if y.min(initial=0) < 0 or y.max(initial=0) >= spec.num_classes:
        raise GreenmachineError(f"{dataset} labels under {folder} fall outside 0..{spec.num_classes - 1}")
    return x, y


def probe_batch(data_dir: str, dataset: str, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A reproducible, normalised minibatch: ``batch_size`` distinct images drawn with ``seed``."""
    spec = check_dataset(dataset)
    x, y = load_images(str(data_dir), dataset)
    if batch_size < 2:
        raise GreenmachineError(f"the probe batch needs at least 2 images, got {batch_size}")
    if batch_size > len(x):
        raise GreenmachineError(f"probe batch of {batch_size} images asked, but {dataset} has only {len(x)} here")
    idx = np.sort(np.random.default_rng(seed).choice(len(x), size=batch_size, replace=False))
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1) / 255.0
    std = torch.tensor(spec.std).view(1, 3, 1, 1) / 255.0
    images = (torch.from_numpy(x[idx]).float() / 255.0 - mean) / std
    return images, torch.from_numpy(y[idx])


def batch_digest(images: torch.Tensor, labels: torch.Tensor) -> str:
    """SHA-256 of a probe minibatch exactly as probed (normalised float images and labels, with their shapes and
    dtypes) and of :data:`DATA_PROTOCOL`: two minibatches share a digest only if every value is equal."""
    h = hashlib.sha256(f"greenmachine-probe-batch:{DATA_PROTOCOL}".encode())
    for t in (images, labels):
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


@lru_cache(maxsize=16)
def images_digest(data_dir: str, dataset: str, batch_size: int, seed: int) -> str:
    """:func:`batch_digest` of the minibatch :func:`probe_batch` draws; computed once per protocol and process."""
    return batch_digest(*probe_batch(str(data_dir), dataset, batch_size, seed))
