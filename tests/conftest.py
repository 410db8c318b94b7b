"""Shared fixtures. Tests run on the real data in ../shared/data (or $GREENMACHINE_DATA) and never skip it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from greenmachine.probing.cache import ProbeCache
from greenmachine.spaces.truth import load_table

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GREENMACHINE_DATA", ROOT.parent / "shared" / "data")).resolve()
TSS_OFFICIAL = DATA / "nats" / "official-3-archs" / "NATS-tss-v1_0-3ffb9-simple"
SSS_OFFICIAL = DATA / "nats" / "official-3-archs" / "NATS-sss-v1_0-50262-simple"
OFFICIAL_INDICES = (0, 11, 284)

torch.set_num_threads(2)


def pytest_configure(config):
    if not (DATA / "README.md").is_file():
        raise pytest.UsageError(f"the real data is missing: expected {DATA} (or set GREENMACHINE_DATA)")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def tss_truth():
    return load_table(DATA / "nats" / "tss-hp200.csv", "tss")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One probe cache for the whole session, so that tests share probes of the same networks."""
    return tmp_path_factory.mktemp("probe-cache")


@pytest.fixture(scope="session")
def cache(cache_dir) -> ProbeCache:
    return ProbeCache(cache_dir, data_dir=DATA)  # data_dir: entries are keyed on the probed images' digest


@pytest.fixture()
def env(monkeypatch, cache_dir):
    """Environment of a CLI run: the real data and the session's probe cache."""
    monkeypatch.setenv("GREENMACHINE_DATA", str(DATA))
    monkeypatch.setenv("GREENMACHINE_CACHE", str(cache_dir))
    return os.environ


def gm(capsys, *args):
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    from greenmachine.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exc.value.code, out, err
