"""Energy accounting: the meter's fall-back chain, the arithmetic, apportioning, the cache-seconds fix, the JSON
blocks of every command and ``energy report`` -- on the real data, with fakes only where this machine lacks the
hardware (no GPU, no /sys/class/powercap)."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import DATA
from greenmachine.cli import main
from greenmachine.energy.accounting import (
    DEFAULT_TRAINING_DEVICE_W,
    EnergySettings,
    co2eq_g,
    energy_block,
    format_joules,
    kwh,
    sum_blocks,
    summary_line,
    training_energy,
)
from greenmachine.energy.meter import EstimateMeter, Meter, ZeusMeter, apportion, make_meter
from greenmachine.errors import GreenmachineError
from greenmachine.executor import ProcessExecutor
from greenmachine.probing.cache import JobResult, ProbeCache, metered_map, probe_sample
from greenmachine.probing.probe import ProbeSettings
from greenmachine.spaces.truth import load_table

BLOCK_KEYS = {"joules", "kwh", "co2eq_g", "source", "estimated", "per_network_j", "training_kwh_avoided",
              "training_device_w", "carbon_g_per_kwh", "pue"}
TINY = ["--sample-size", "10", "--population", "6", "--generations", "1", "--batch-size", "16", "--quiet"]


# -- fakes of zeus' ZeusMonitor: only what the meter uses ---------------------------------------------------------

class FakeMonitor:
    """A ZeusMonitor stand-in whose counters advance by fixed joules per read (per window end)."""

    def __init__(self, gpu_indices, cpu_indices, gpu_step=0.0, cpu_step=0.0):
        self.gpu_indices, self.cpu_indices = list(gpu_indices), list(cpu_indices)
        self.gpu_step, self.cpu_step = gpu_step, cpu_step
        self.open: set[str] = set()

    def begin_window(self, key):
        assert key not in self.open
        self.open.add(key)

    def end_window(self, key):
        self.open.remove(key)
        return SimpleNamespace(gpu_energy={i: self.gpu_step for i in self.gpu_indices},
                               cpu_energy={i: self.cpu_step for i in self.cpu_indices})


def factory(gpus=(), cpus=(), gpu_step=0.0, cpu_step=0.0):
    def make(gpu_indices, cpu_indices):
        return FakeMonitor([g for g in gpu_indices if g in gpus], cpus if cpu_indices is None else cpu_indices,
                           gpu_step, cpu_step)
    return make


def test_no_gpu_no_rapl_falls_back_to_a_labelled_estimate(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    meter = make_meter("cuda", 12.0, monitor_factory=factory())
    assert isinstance(meter, EstimateMeter)
    assert (meter.source, meter.estimated, meter.describe()) == ("estimate", True, "estimated, CPU")
    assert "no CUDA device" in meter.detail and "RAPL" in meter.detail
    # a driver that fails outright is a fall-back too, with the reason kept
    def broken(gpu_indices, cpu_indices):
        raise OSError("permission denied")
    meter = make_meter("cpu", 12.0, monitor_factory=broken)
    assert meter.source == "estimate" and "permission denied" in meter.detail
    block = energy_block(meter, EnergySettings(), None, "score", 0)
    assert block["source"] == "estimate" and block["estimated"] is True and block["cpu_watts_per_core"] == 12.0
    assert "(estimated, CPU)" in summary_line(block)


def test_this_machine_without_powercap_uses_the_estimate_through_real_zeus():
    meter = make_meter("cpu")  # the real zeus monitor
    if Path("/sys/class/powercap/intel-rapl").exists():
        assert meter.source in ("rapl", "estimate")
    else:
        assert meter.source == "estimate" and meter.estimated


def test_rapl_and_nvml_are_used_when_readable(monkeypatch):
    import torch

    meter = make_meter("cpu", monitor_factory=factory(cpus=[0], cpu_step=5.0))
    assert isinstance(meter, ZeusMeter) and (meter.source, meter.estimated) == ("rapl", False)
    with meter.window("probing") as win:
        pass
    assert win.joules == pytest.approx(5.0)  # one counter step inside the window
    assert meter.joules() == pytest.approx(15.0)  # reads at window start, end, and now

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    meter = make_meter("cuda", monitor_factory=factory(gpus=[0], gpu_step=100.0))
    assert (meter.source, meter.estimated, meter.describe()) == ("nvml", False, "measured, NVML")
    with meter.window("probing") as win:
        pass
    assert win.components_j == {"gpu": pytest.approx(100.0)}
    # a GPU without an energy counter falls through to RAPL
    meter = make_meter("cuda", monitor_factory=factory(gpus=[], cpus=[0]))
    assert meter.source == "rapl" and "no NVML" in meter.detail


def test_energy_and_carbon_arithmetic_on_hand_computed_values():
    clock = iter([0.0, 2.0, 12.0, 30.0, 30.0, 30.0])  # start, window open, window close, then reads
    meter = EstimateMeter(12.0, process_time=lambda: next(clock))
    with meter.window("probing") as win:
        pass
    assert win.joules == pytest.approx(10.0 * 12.0)  # 10 CPU-seconds x 12 W
    assert meter.joules() == pytest.approx(30.0 * 12.0)
    assert kwh(3.6e6) == 1.0
    assert co2eq_g(2.0, 475.0, 1.56) == pytest.approx(2.0 * 1.56 * 475.0)  # 1482 g

    class Fixed(Meter):
        def _read(self):
            return {"cpu": 7.2e6}

    m = Fixed()
    m.record_window(SimpleNamespace(joules=3.6e6), [(1, "a", {"ce": 1.0}), (2, "b", {"ce": 3.0})])
    block = energy_block(m, EnergySettings(carbon_g_per_kwh=400.0, pue=1.5, training_device_w=300.0),
                         None, "score", 2)
    assert block["joules"] == 7.2e6 and block["kwh"] == pytest.approx(2.0)
    assert block["co2eq_g"] == pytest.approx(2.0 * 1.5 * 400.0)
    assert block["probing_j"] == pytest.approx(3.6e6) and block["other_j"] == pytest.approx(3.6e6)
    assert block["per_network_j"] == pytest.approx(1.8e6)
    assert (block["carbon_g_per_kwh"], block["pue"], block["training_device_w"]) == (400.0, 1.5, 300.0)
    assert format_joules(41_234.0) == "41.2 kJ" and format_joules(850.0) == "850 J"


def test_settings_are_validated_in_one_line(capsys):
    for bad in (EnergySettings(pue=0.9), EnergySettings(carbon_g_per_kwh=-1.0),
                EnergySettings(training_device_w=math.inf), EnergySettings(cpu_watts_per_core=math.nan)):
        with pytest.raises(GreenmachineError):
            bad.validate()
    with pytest.raises(SystemExit) as exc:
        main(["score", "nowhere.json", "--pue", "0"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: --pue") and err.count("\n") == 1


def test_apportioning_with_two_workers():
    assert apportion(100.0, [1.0, 3.0]) == [25.0, 75.0]
    assert apportion(10.0, [0.0, 0.0]) == [5.0, 5.0]

    class TwoWorkers:
        """Results as two worker processes (other pids) return them: network 1 took 1 s, network 2 took 3 s."""
        workers = 2

        def map(self, fn, items):
            return iter([JobResult(1, "a", None, {"ce": 1.0}, 1.0, -1), JobResult(2, "b", None, {"ce": 3.0}, 3.0, -2)])

    meter = EstimateMeter(10.0, process_time=lambda: 0.0)  # the parent itself spends nothing
    list(metered_map(None, [1, 2], TwoWorkers(), meter))
    (win,) = meter.windows
    assert win.joules == pytest.approx((1.0 + 3.0) * 10.0)  # both workers' CPU time lands in the one window
    by_index = {p.index: p.joules for p in meter.passes}
    assert by_index == {1: pytest.approx(10.0), 2: pytest.approx(30.0)} and meter.workers == 2
    block = energy_block(meter, EnergySettings(), None, "score", 2)
    assert block["workers"] == 2 and "worker" in block["apportioning"]


def _spin(seconds: float, job):
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        pass
    return JobResult(job, str(job), None, {"spin": time.process_time() - t0}, time.process_time() - t0, os.getpid())


def test_two_real_worker_processes_are_metered_and_shares_add_up():
    from functools import partial

    meter = EstimateMeter(12.0)
    pool = ProcessExecutor(2)
    try:
        results = list(metered_map(partial(_spin, 0.2), [1, 2, 3, 4], pool, meter))
    finally:
        pool.close()
    assert {r.pid for r in results} - {os.getpid()}  # the work ran in the workers
    (win,) = meter.windows
    assert win.joules >= 4 * 0.2 * 12.0 * 0.95  # the workers' CPU time is in the window
    assert sum(p.joules for p in meter.passes) == pytest.approx(win.joules)


def test_cached_probe_reports_its_seconds_once(tmp_path):
    settings = ProbeSettings("tss", "cifar10", batch_size=8, batch_seed=0, init_seed=0)
    truth = load_table(DATA / "nats" / "tss-hp200.csv", "tss")
    items = [(11, truth.arch(11))]
    cache = ProbeCache(tmp_path, data_dir=DATA) if "data_dir" in ProbeCache.__dataclass_fields__ else ProbeCache(tmp_path)
    meter = EstimateMeter()
    (fresh,) = probe_sample(items, settings, DATA, cache=cache, meter=meter)
    per_pass = {p.group: p.seconds for p in meter.passes}
    assert set(per_pass) == {"ce", "synflow", "spectrum"}
    assert fresh.seconds == pytest.approx(sum(per_pass.values()))
    again = EstimateMeter()
    (cached,) = probe_sample(items, settings, DATA, cache=cache, meter=again)
    assert cached.seconds == pytest.approx(fresh.seconds)  # once, not once per pass file (it was 3x)
    assert again.passes == [] and again.cached_networks == {11}
    block = energy_block(again, EnergySettings(), None, "score", 1)
    assert block["networks_probed"] == 0 and block["networks_from_cache"] == 1 and block["per_network_j"] is None


def test_training_energy_avoided_is_train_seconds_x_epochs_x_power(tss_truth):
    idx = [3, 17, 284, 1000]
    te = training_energy(tss_truth, "cifar100", idx, 300.0)
    expected = sum(tss_truth.train_seconds_per_epoch["cifar100"][i] * 200 * 300.0 / 3.6e6 for i in idx)
    assert te.kwh == pytest.approx(expected) and te.reason is None and "200 epochs" in te.method
    sss = load_table(DATA / "nats" / "sss-hp90.csv", "sss")
    te = training_energy(sss, "cifar10", [0, 11], 250.0)
    assert te.kwh is None and "no training times" in te.reason

    class WithMeasured:  # a benchmark with measured training kWh (EC-NAS) is used as it is
        hp = "4"
        def metric(self, name, dataset):
            return np.array([0.5, 1.0, 2.0]) if name == "train_energy_kwh" else None
    te = training_energy(WithMeasured(), "cifar10", [0, 2], 250.0)
    assert te.kwh == pytest.approx(2.5) and "measured" in te.method


def test_a_multi_dataset_evolution_stands_in_for_training_on_every_dataset(tss_truth):
    from greenmachine.energy.accounting import training_energy_all

    idx = [3, 17, 284]
    datasets = ("cifar10", "cifar100", "ImageNet16-120")
    te = training_energy_all(tss_truth, datasets, idx, 300.0)
    assert te.kwh == pytest.approx(sum(training_energy(tss_truth, d, idx, 300.0).kwh for d in datasets))
    assert te.architectures == 3 and te.method.count("_train_s_per_epoch") == 3
    assert training_energy_all(tss_truth, ("cifar10",), idx, 300.0) == training_energy(tss_truth, "cifar10", idx, 300.0)
    sss = load_table(DATA / "nats" / "sss-hp90.csv", "sss")
    te = training_energy_all(sss, ("cifar10", "cifar100"), idx, 300.0)
    assert te.kwh is None and "no training times for cifar10" in te.reason


def test_the_summary_line_names_source_cache_parts_and_ratio():
    block = {"networks": 500, "networks_from_cache": 0, "probing_j": 41_000.0, "joules": 45_000.0, "co2eq_g": 9.26,
             "estimated": True, "source": "estimate", "training_kwh_avoided": 2310.0}
    line = summary_line(block)
    assert line == ("probing 500 networks: 41.0 kJ (estimated, CPU) | run: 45.0 kJ, 9.26 gCO2eq | "
                    "training them: 2,310 kWh | 1 : 184,800")  # 2310 kWh = 8.316e9 J, / 45e3 J
    resumed = {**block, "parts": 2, "networks_from_cache": 500, "estimated": False, "source": "rapl"}
    assert "500 from the cache" in summary_line(resumed) and "45.0 kJ over 2 parts" in summary_line(resumed)
    assert "(measured, RAPL)" in summary_line(resumed)
    unknown = {**block, "training_kwh_avoided": None, "training_reason": "the sss ground truth has no training times"}
    assert "training them: unknown (the sss ground truth has no training times)" in summary_line(unknown)


def test_sum_blocks_keeps_unknown_training_unknown():
    a = {"joules": 10.0, "co2eq_g": 1.0, "estimated": False, "source": "rapl", "training_kwh_avoided": 2.0}
    b = {"joules": 5.0, "co2eq_g": 0.5, "estimated": True, "source": "estimate", "training_kwh_avoided": None}
    total = sum_blocks([a, b])
    assert total["joules"] == 15.0 and total["estimated"] and total["training_kwh_avoided"] is None
    assert sum_blocks([a, a])["training_kwh_avoided"] == 4.0


# -- every command's summary JSON has the block --------------------------------------------------------------------

def gm(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert exc.value.code == 0, err
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache_dir):
    mp = pytest.MonkeyPatch()
    mp.setenv("GREENMACHINE_DATA", str(DATA))
    mp.setenv("GREENMACHINE_CACHE", str(cache_dir))
    root = tmp_path_factory.mktemp("energy-runs")
    yield root, mp
    mp.undo()


def _check_block(block, command, networks):
    assert BLOCK_KEYS <= set(block)
    assert block["command"] == command and block["networks"] == networks
    assert block["source"] in ("nvml", "rapl", "estimate")
    assert block["estimated"] is (block["source"] == "estimate")
    assert block["joules"] > 0 and block["kwh"] == pytest.approx(block["joules"] / 3.6e6)
    assert block["co2eq_g"] == pytest.approx(block["kwh"] * block["pue"] * block["carbon_g_per_kwh"])


def test_every_summary_json_has_the_energy_block(runs, capsys, tss_truth):
    root, _ = runs
    # evolve: proxy.json (the run record)
    out = gm(capsys, "evolve", "--space", "tss", "--dataset", "cifar10", *TINY, "--out", root / "evo",
             "--carbon-intensity", "300", "--pue", "1.2")
    assert "energy: probing 10 networks" in out
    proxy = json.loads((root / "evo" / "proxy.json").read_text())
    _check_block(proxy["energy"], "evolve", 10)
    assert (proxy["energy"]["carbon_g_per_kwh"], proxy["energy"]["pue"]) == (300.0, 1.2)
    want = sum(tss_truth.train_seconds_per_epoch["cifar10"][i] * 200 * DEFAULT_TRAINING_DEVICE_W / 3.6e6
               for i in proxy["sample_indices"])
    assert proxy["energy"]["training_kwh_avoided"] == pytest.approx(want)

    # score: scores.summary.json
    out = gm(capsys, "score", root / "evo" / "proxy.json", "--archs", "3,17,284", "--out", root / "evo" / "scores.csv",
             "--training-device-w", "300", "--quiet")
    assert "energy: probing 3 networks" in out and "energy_joules=" in out
    block = json.loads((root / "evo" / "scores.summary.json").read_text())["energy"]
    _check_block(block, "score", 3)
    want = sum(tss_truth.train_seconds_per_epoch["cifar10"][i] * 200 * 300.0 / 3.6e6 for i in (3, 17, 284))
    assert block["training_kwh_avoided"] == pytest.approx(want) and block["training_device_w"] == 300.0

    # baselines: table.summary.json
    out = gm(capsys, "baselines", "--archs", "3,17", "--proxies", "params,synflow", "--include",
             root / "evo" / "proxy.json", "--batch-size", "16", "--out", root / "table.csv", "--quiet")
    assert "energy: probing 2 networks" in out
    block = json.loads((root / "table.summary.json").read_text())["energy"]
    _check_block(block, "baselines", 2)
    assert {"baseline:params", "baseline:synflow"} <= set(block["per_pass"])
    # the evolved column came from the cache, but the baselines probed both networks: none counts as cached
    assert block["networks_probed"] == 2 and block["networks_from_cache"] == 0

    # energy report sums them
    out = gm(capsys, "energy", "report", root, "--json", root / "total.json")
    total = json.loads((root / "total.json").read_text())
    assert len(total["files"]) == 3
    blocks = [json.loads(Path(f).read_text())["energy"] for f in total["files"]]
    assert total["total"]["joules"] == pytest.approx(sum(b["joules"] for b in blocks))
    assert "total" in out and "runs=3" in out

    # a resumed evolution is one run: its block adds the earlier part's joules (kept in the engine's checkpoint)
    first = proxy["energy"]
    out = gm(capsys, "evolve", "--space", "tss", "--dataset", "cifar10", *TINY[:-3], "--generations", "2",
             "--batch-size", "16", "--quiet", "--out", root / "evo", "--resume")
    block = json.loads((root / "evo" / "proxy.json").read_text())["energy"]
    assert block["parts"] == 2 and "over 2 parts" in out
    assert 0 < block["earlier_parts_j"] <= first["joules"] and block["joules"] > block["earlier_parts_j"]
    assert block["networks_from_cache"] == 10 and block["networks_probed"] == 0


def test_energy_report_of_a_folder_without_blocks_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["energy", "report", str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: ") and "no summary JSON with an energy block" in err
