"""Ground truth: the official API and the compact table agree; export round-trips; bad sources fail clearly."""

import numpy as np
import pytest

from conftest import DATA, OFFICIAL_INDICES, SSS_OFFICIAL, TSS_OFFICIAL
from greenmachine.errors import GreenmachineError
from greenmachine.spaces.truth import DATASET_NAMES, export_table, find_truth_source, load_official, load_table


def test_table_and_official_api_agree_on_the_official_records(tss_truth):
    official = load_official(TSS_OFFICIAL, "tss")
    assert sorted(official.available("cifar10")) == list(OFFICIAL_INDICES)
    for d in DATASET_NAMES:
        for i in OFFICIAL_INDICES:
            assert tss_truth.accuracy[d][i] == pytest.approx(official.accuracy[d][i], abs=1e-9)
            assert tss_truth.train_seconds_per_epoch[d][i] == pytest.approx(official.train_seconds_per_epoch[d][i], rel=1e-3)
    assert len(tss_truth.available("cifar10")) == 15625


def test_metrics_of_the_nats_tables(tss_truth):
    """train_seconds is NATS-Bench's train-all-time (s/epoch x 200); what the benchmark lacks is None."""
    secs = tss_truth.metric("train_seconds", "cifar10")
    assert secs.shape == (15625,)
    assert secs[11] == pytest.approx(tss_truth.train_seconds_per_epoch["cifar10"][11] * 200)
    assert tss_truth.metric("train_energy_kwh", "cifar10") is None
    assert tss_truth.metric("params", "cifar100") is None
    assert tss_truth.metric("accuracy", "cifar10") is tss_truth.accuracy["cifar10"]
    with pytest.raises(GreenmachineError, match="unknown dataset"):
        tss_truth.metric("train_seconds", "mnist")


def test_sss_official_records_hp90():
    sss = load_official(SSS_OFFICIAL, "sss")
    assert sss.hp == "90"
    assert sss.accuracy["cifar10"][0] == pytest.approx(79.79)  # the published full-space fact for index 0
    assert sss.arch(284) == "8:8:40:32:40"
    assert list(sss.available("cifar100")) == list(OFFICIAL_INDICES)


@pytest.mark.parametrize("space,folder", [("tss", TSS_OFFICIAL), ("sss", SSS_OFFICIAL)])
def test_export_round_trip(tmp_path, space, folder):
    official = load_official(folder, space)
    out = tmp_path / f"{space}.csv"
    assert export_table(official, out) == 3
    table = load_table(out, space)
    for d in DATASET_NAMES:
        np.testing.assert_allclose(table.accuracy[d], official.accuracy[d], equal_nan=True)
    assert table.arch(11) == official.arch(11)


def test_truth_source_lookup(tmp_path):
    """The compact table is found first; the official directory only where no table exists."""
    assert find_truth_source(DATA, "tss").name == "tss-hp200.csv"
    assert find_truth_source(DATA, "sss").name == "sss-hp90.csv"
    # a data folder with only the official directory (one folder below nats/) falls back to it
    official_only = tmp_path / "official" / "nats" / "official-3-archs"
    official_only.mkdir(parents=True)
    (official_only / SSS_OFFICIAL.name).symlink_to(SSS_OFFICIAL, target_is_directory=True)
    assert find_truth_source(tmp_path / "official", "sss").name == "NATS-sss-v1_0-50262-simple"
    with pytest.raises(GreenmachineError, match="sss-hp90.csv"):
        find_truth_source(tmp_path, "sss")


def test_bad_tables(tmp_path):
    with pytest.raises(GreenmachineError, match="not found"):
        load_table(tmp_path / "nope.csv", "tss")
    bad = tmp_path / "bad.csv"
    bad.write_text("index,arch\n0,x\n")
    with pytest.raises(GreenmachineError, match="lacks the columns"):
        load_table(bad, "tss")
    bad.write_text("index,arch,cifar10,cifar100,ImageNet16-120\n0,8:8:8:8:8,abc,1,1\n")
    with pytest.raises(GreenmachineError, match=r"bad.csv, line 2: cifar10 is not a number"):
        load_table(bad, "sss")
    with pytest.raises(GreenmachineError, match="not an official"):
        load_official(tmp_path, "tss")


def test_arch_lookup_errors(tss_truth):
    with pytest.raises(GreenmachineError, match="outside"):
        tss_truth.arch(15625)
    with pytest.raises(GreenmachineError, match="outside"):
        tss_truth.parse_archs(["99999"], "cifar10")
    assert tss_truth.parse_archs(["3", tss_truth.arch(17)], "cifar10") == [3, 17]
