"""Where data lives, and loading the pieces every command needs (data folder, ground truth, probe settings)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from greenmachine.errors import GreenmachineError
from greenmachine.probing.probe import ProbeSettings
from greenmachine.spaces.sampling import sample_indices
from greenmachine.spaces.truth import GroundTruth, find_truth_source, load_truth
from greenmachine.ui import Reporter

DATA_ENV = "GREENMACHINE_DATA"


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """``--data-dir``, else ``$GREENMACHINE_DATA``; the folder must exist (layout of ``shared/data``)."""
    value = data_dir or os.environ.get(DATA_ENV)
    if not value:
        raise GreenmachineError(f"no data folder: pass --data-dir DIR or set {DATA_ENV} (layout: images/..., nats/...)")
    path = Path(value)
    if not path.is_dir():
        raise GreenmachineError(f"data folder not found: {path}")
    return path


def load_space_truth(data_dir: Path, space: str, reporter: Reporter | None = None) -> GroundTruth:
    reporter = reporter or Reporter(quiet=True)
    source = find_truth_source(data_dir, space)

    def progress(items):
        items = list(items)
        return reporter.track(items, len(items), f"reading {space.upper()} ground truth")

    return load_truth(source, space, progress=progress)


def choose_architectures(
    truth: GroundTruth, dataset: str, archs: str | None, sample_size: int, sampling: str, seed: int,
    exclude: Iterable[int] = (),
) -> list[int]:
    """``--archs 3,17,...`` (indices or arch strings) if given, else a seeded sample outside ``exclude``."""
    if archs:
        return truth.parse_archs(archs.split(","), dataset)
    return sample_indices(truth, dataset, sample_size, sampling, seed=seed, exclude=exclude)


def probe_settings(
    space: str, dataset: str, batch_size: int, seed: int, device: str, init_seed: int | None = None
) -> ProbeSettings:
    """The probe protocol of a run: the minibatch and (unless given) the network initialisation follow the seed."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise GreenmachineError("--device cuda asked, but torch sees no CUDA device here")
    return ProbeSettings(space, dataset, batch_size=batch_size, batch_seed=seed,
                         init_seed=seed if init_seed is None else init_seed, device=device)
