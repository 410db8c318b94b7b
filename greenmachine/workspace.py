"""Where data lives, and loading the pieces every command needs (data folder, ground truth, probe settings)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from greenmachine.errors import GreenmachineError
from greenmachine.probing.probe import ProbeSettings, check_spectrum_images
from greenmachine.spaces.sampling import sample_indices
from greenmachine.spaces.truth import GroundTruth, find_truth_source, load_truth
from greenmachine.ui import Reporter

if TYPE_CHECKING:
    from greenmachine.proxies.proxyfile import Proxy

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
    """``--archs 3,17,...`` (indices or arch strings) if given, else a seeded sample outside ``exclude``.

    Either way at least two architectures: Kendall tau and Spearman rho rank two or more, and one would print
    ``tau=nan`` as if it were a result. Indices are ASCII digits only: ``str.isdigit`` and ``int`` also take
    ``"١٢"`` (Arabic-Indic) or ``"²"``, so a mistyped option could silently name another network.
    """
    if archs is not None:
        tokens = [t.strip() for t in archs.split(",")]
        for tok in tokens:
            if not tok.isascii():
                raise GreenmachineError(f"--archs item {tok[:40]!r} is neither an index (ASCII digits 0-9) "
                                        "nor an architecture string")
        if not any(tokens):
            raise GreenmachineError("--archs names no architecture")
        chosen = truth.parse_archs(tokens, dataset)
    else:
        if sample_size < 2:
            raise GreenmachineError(f"--sample-size must be at least 2 (Kendall tau ranks two or more "
                                    f"architectures), got {sample_size}")
        chosen = sample_indices(truth, dataset, sample_size, sampling, seed=seed, exclude=exclude)
    if len(chosen) < 2:
        raise GreenmachineError(f"Kendall tau needs at least two architectures; --archs names {len(chosen)}")
    return chosen


def probe_settings(
    space: str, dataset: str, batch_size: int, seed: int, device: str, init_seed: int | None = None,
    data_dir: str | Path | None = None, spectrum_images: int = 1,
) -> ProbeSettings:
    """The probe protocol of a run: the minibatch and (unless given) the network initialisation follow the seed.

    With ``data_dir`` the settings carry the digest of the minibatch drawn from it (``images_digest``), computed
    once here, so that the probe cache keys on the images actually probed; without it the cache computes the
    digest from its own ``data_dir``, or does not cache.
    """
    from greenmachine.config import check_seed

    check_seed(seed, "the probe seed")
    check_seed(seed if init_seed is None else init_seed, "the initialisation seed")
    if batch_size < 2:
        raise GreenmachineError(f"the probe batch needs at least 2 images, got {batch_size}")
    check_spectrum_images(spectrum_images, batch_size)
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise GreenmachineError("--device cuda asked, but torch sees no CUDA device here")
    digest = ""
    if data_dir is not None:
        from greenmachine.probing.datasets import images_digest

        digest = images_digest(str(data_dir), dataset, batch_size, seed)
    return ProbeSettings(space, dataset, batch_size=batch_size, batch_seed=seed,
                         init_seed=seed if init_seed is None else init_seed, device=device, images_digest=digest,
                         spectrum_images=spectrum_images)


def proxy_protocol(proxy: Proxy, space: str, dataset: str, device: str, data_dir: str | Path | None = None,
                   spectrum_images: int | None = None, probe_seed: int | None = None) -> tuple[ProbeSettings, int]:
    """The probe protocol a proxy file records (minibatch size and seed, initialisation seed, the spectra's
    images) on ``dataset``, and the initialisations its score averages over: what every command that scores a
    proxy on its own terms (``score``, ``reproduce``, ``search --objective proxy.json``) probes, so that a proxy
    evolved with ``--spectrum-images`` or ``--inits`` is not scored under another protocol. ``spectrum_images``
    overrides the file's (``score --spectrum-images``); ``probe_seed`` replaces both its minibatch and initialisation
    seeds (``score --probe-seed``, as ``baselines --probe-seed``), to score one tree under another draw."""
    p = proxy.probe
    batch_seed, init_seed = p.get("batch_seed", 0), p.get("init_seed")
    if probe_seed is not None:
        batch_seed = init_seed = probe_seed
    settings = probe_settings(space, dataset, p.get("batch_size", 64), batch_seed, device,
                              init_seed=init_seed, data_dir=data_dir,
                              spectrum_images=p.get("spectrum_images", 1) if spectrum_images is None
                              else spectrum_images)
    return settings, p.get("inits", 1)
