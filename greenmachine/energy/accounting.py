"""From joules to kWh and gCO2eq, the training energy a run avoided, and the ``energy`` block of every summary JSON.

Defaults (all configurable, none needs network access):

* carbon intensity :data:`DEFAULT_CARBON_G_PER_KWH` = 475 gCO2eq/kWh: the world average of electricity generation
  (IEA, Global Energy & CO2 Status Report 2019), the "World" row of the Green Algorithms carbon-intensity table
  (GreenAlgorithms/green-algorithms-tool ``data/CI_aggregated.csv``). Set yours with ``--carbon-intensity``.
* PUE :data:`DEFAULT_PUE` = 1.56: the average power usage effectiveness of data centres in the Uptime Institute
  Global Data Center Survey 2024, Green Algorithms' default for an unknown provider (``data/defaults_PUE.csv``).
  A desktop has no facility overhead: pass ``--pue 1``.
* training-device power :data:`DEFAULT_TRAINING_DEVICE_W` = 250 W: the board power (TDP) of the GPUs of the
  NAS-Bench-201 / NATS-Bench era (GeForce GTX 1080 Ti, RTX 2080 Ti and Tesla V100 PCIe are all rated 250 W).
  NATS-Bench publishes training seconds, not watts, so this is an assumption and is written into every block.

What the figures mean: ``joules`` and ``kwh`` are the energy the meter saw at the device (IT energy); ``co2eq_g``
is ``kwh x pue x carbon_g_per_kwh``, i.e. the facility's share is added before converting to carbon.
``training_kwh_avoided`` is IT energy too (``train_s_per_epoch x epochs x training_device_w / 3.6e6`` summed over
the architectures the run ranked without training them, or a benchmark's measured kWh), so the ratio of the two is
like for like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from greenmachine.energy.meter import APPORTIONING, DEFAULT_CPU_WATTS_PER_CORE, Meter
from greenmachine.errors import GreenmachineError

J_PER_KWH = 3.6e6
DEFAULT_CARBON_G_PER_KWH = 475.0
DEFAULT_PUE = 1.56
DEFAULT_TRAINING_DEVICE_W = 250.0


@dataclass(frozen=True)
class EnergySettings:
    """The conversion factors of a run; every one is written into the JSON block beside the figures it made."""

    carbon_g_per_kwh: float = DEFAULT_CARBON_G_PER_KWH
    pue: float = DEFAULT_PUE
    training_device_w: float = DEFAULT_TRAINING_DEVICE_W
    cpu_watts_per_core: float = DEFAULT_CPU_WATTS_PER_CORE

    def validate(self) -> "EnergySettings":
        for name, option in (("carbon_g_per_kwh", "--carbon-intensity"), ("pue", "--pue"),
                             ("training_device_w", "--training-device-w"),
                             ("cpu_watts_per_core", "--cpu-watts-per-core")):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise GreenmachineError(f"{option} must be a positive finite number, not {value}")
        if self.pue < 1.0:
            raise GreenmachineError(f"--pue must be at least 1 (facility energy / IT energy), not {self.pue}")
        return self


def kwh(joules: float) -> float:
    return joules / J_PER_KWH


def co2eq_g(kwh_it: float, carbon_g_per_kwh: float, pue: float) -> float:
    """Grams CO2eq of ``kwh_it`` of IT energy drawn in a facility of the given PUE."""
    return kwh_it * pue * carbon_g_per_kwh


@dataclass
class TrainingEnergy:
    """What training the ranked architectures would have cost; ``kwh`` is None when the data cannot say."""

    kwh: float | None
    architectures: int
    method: str
    reason: str | None = None


def training_energy(truth, dataset: str, indices: Iterable[int], training_device_w: float) -> TrainingEnergy:
    """Energy of training every architecture in ``indices`` on ``dataset`` with the benchmark's own schedule.

    A benchmark with measured training energy (EC-NAS: ``truth.metric("train_energy_kwh", dataset)``) is used as is;
    otherwise ``train_seconds_per_epoch x epochs (the truth's hp) x training_device_w``. Where the table has no
    training times (the SSS table) the figure is None with the reason: never a guess presented as data."""
    idx = np.asarray(sorted(set(int(i) for i in indices)), dtype=np.int64)
    n = len(idx)
    metric = getattr(truth, "metric", None)
    measured = metric("train_energy_kwh", dataset) if callable(metric) else None
    if measured is not None:
        vals = np.asarray(measured, dtype=np.float64)[idx]
        missing = int((~np.isfinite(vals)).sum())
        if missing:
            return TrainingEnergy(None, n, "measured training kWh (benchmark)",
                                  f"{missing} of {n} architectures have no measured training energy")
        return TrainingEnergy(float(vals.sum()), n, "measured training kWh (benchmark)")
    try:
        epochs = int(str(truth.hp))
    except (TypeError, ValueError):
        return TrainingEnergy(None, n, "train_s_per_epoch x epochs x training_device_w",
                              f"the ground truth names no epoch count (hp={truth.hp!r})")
    method = f"{dataset}_train_s_per_epoch x {epochs} epochs x {training_device_w:g} W"
    per_epoch = getattr(truth, "train_seconds_per_epoch", {}).get(dataset)
    if per_epoch is None:
        return TrainingEnergy(None, n, method, f"the {truth.space} ground truth has no training times for {dataset}")
    vals = np.asarray(per_epoch, dtype=np.float64)[idx]
    missing = int((~np.isfinite(vals)).sum())
    if missing == n and n:
        return TrainingEnergy(None, n, method, f"the {truth.space} ground truth ({truth.source}) has no training "
                                               f"times for {dataset}")
    if missing:
        return TrainingEnergy(None, n, method, f"{missing} of {n} architectures have no training time in "
                                               f"{truth.source}")
    return TrainingEnergy(float(vals.sum()) * epochs * training_device_w / J_PER_KWH, n, method)


def training_energy_all(truth, datasets: Sequence[str], indices: Iterable[int],
                        training_device_w: float) -> TrainingEnergy:
    """Training every architecture on every dataset of a multi-dataset evolution: what its one proxy stands in for.
    The sum of :func:`training_energy` per dataset; unknown (with the first dataset's reason) if any is unknown."""
    indices = list(indices)
    parts = [training_energy(truth, d, indices, training_device_w) for d in datasets]
    if len(parts) == 1:
        return parts[0]
    method = " + ".join(p.method for p in parts)
    for p in parts:
        if p.kwh is None:
            return TrainingEnergy(None, p.architectures, method, p.reason)
    return TrainingEnergy(sum(p.kwh for p in parts), parts[0].architectures, method)


def energy_block(meter: Meter, settings: EnergySettings, training: TrainingEnergy | None, command: str,
                 networks: int, joules: float | None = None) -> dict[str, Any]:
    """The ``energy`` block of a summary JSON.

    ``joules`` is everything the command spent while the meter ran (probing, tree evaluation, GP; the meter's
    total unless given); ``probing_j`` the part spent in probing windows; ``per_network_j`` the probing joules per
    network probed in this run (None when every probe came from the cache). ``networks`` is the number of
    architectures the command ranked, probed or cached."""
    total = meter.joules() if joules is None else float(joules)
    probing = meter.probing_joules()
    probed = meter.probed_networks()
    total_kwh = kwh(total)
    per_pass: dict[str, dict[str, float]] = {}
    for p in meter.passes:
        d = per_pass.setdefault(p.group, {"networks": 0, "seconds": 0.0, "joules": 0.0})
        d["networks"] += 1
        d["seconds"] += p.seconds
        d["joules"] += p.joules
    block: dict[str, Any] = {
        "joules": total,
        "kwh": total_kwh,
        "co2eq_g": co2eq_g(total_kwh, settings.carbon_g_per_kwh, settings.pue),
        "source": meter.source,
        "estimated": meter.estimated,
        "per_network_j": probing / probed if probed else None,
        "training_kwh_avoided": None if training is None else training.kwh,
        "training_device_w": settings.training_device_w,
        "carbon_g_per_kwh": settings.carbon_g_per_kwh,
        "pue": settings.pue,
        # how the figures above were made
        "command": command,
        "seconds": meter.seconds(),
        "probing_j": probing,
        "other_j": max(0.0, total - probing),
        "networks": networks,
        "networks_probed": probed,
        # read back from the cache and not probed for anything else in this run (baselines probe cached networks)
        "networks_from_cache": len(meter.cached_networks - {p.index for p in meter.passes}),
        "per_pass": per_pass,
        "workers": meter.workers,
        "apportioning": APPORTIONING,
        "meter": meter.info(),
        "training_method": None if training is None else training.method,
        "training_reason": None if training is None else training.reason,
        "kwh_is": "IT energy at the device; co2eq_g = kwh x pue x carbon_g_per_kwh",
    }
    if meter.source == "estimate":
        block["cpu_watts_per_core"] = settings.cpu_watts_per_core
    return block


def format_joules(j: float) -> str:
    """``41 kJ``, ``3.2 MJ``, ``850 J``: three significant figures at most."""
    for scale, unit in ((1e9, "GJ"), (1e6, "MJ"), (1e3, "kJ")):
        if abs(j) >= scale:
            return f"{_sig(j / scale)} {unit}"
    return f"{_sig(j)} J"


def format_kwh(k: float) -> str:
    if k >= 100:
        return f"{k:,.0f} kWh"
    return f"{_sig(k)} kWh"


def _sig(x: float) -> str:
    if x == 0:
        return "0"
    digits = max(0, 2 - int(math.floor(math.log10(abs(x)))))
    return f"{x:,.{digits}f}"


def summary_line(block: dict[str, Any]) -> str:
    """One line for the summary table, e.g. ``probing 500 networks: 41 kJ (estimated, CPU) | run: 45 kJ, 9.4 gCO2eq
    | training them: 2,310 kWh | 1 : 180,000``."""
    label = "estimated, CPU" if block["estimated"] else f"measured, {block['source'].upper()}"
    cached = block.get("networks_from_cache", 0)
    from_cache = f", {cached} from the cache" if cached else ""
    parts = [f"probing {block['networks']:,} networks{from_cache}: {format_joules(block['probing_j'])} ({label})",
             f"run: {format_joules(block['joules'])}{_parts(block)}, {_sig(block['co2eq_g'])} gCO2eq"]
    avoided = block.get("training_kwh_avoided")
    if avoided is None:
        parts.append(f"training them: unknown ({block.get('training_reason') or 'no training data'})")
    else:
        parts.append(f"training them: {format_kwh(avoided)}")
        if block["joules"] > 0:
            parts.append(f"1 : {avoided * J_PER_KWH / block['joules']:,.0f}")
    return " | ".join(parts)


def _parts(block: dict[str, Any]) -> str:
    """`` over 2 parts`` for a resumed run (its earlier parts' joules are in the total, not in this part's probing)."""
    parts = int(block.get("parts") or 1)
    return f" over {parts} parts" if parts > 1 else ""


def sum_blocks(blocks: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Totals over several runs' blocks (``greenmachine energy report``). Training avoided is summed only where every
    block knows it; a total with any estimated part is estimated."""
    joules = sum(float(b.get("joules") or 0.0) for b in blocks)
    avoided = [b.get("training_kwh_avoided") for b in blocks]
    return {
        "joules": joules,
        "kwh": kwh(joules),
        "co2eq_g": sum(float(b.get("co2eq_g") or 0.0) for b in blocks),
        "probing_j": sum(float(b.get("probing_j") or 0.0) for b in blocks),
        "other_j": sum(float(b.get("other_j") or 0.0) for b in blocks),
        "networks": sum(int(b.get("networks") or 0) for b in blocks),
        "estimated": any(bool(b.get("estimated", True)) for b in blocks),
        "sources": sorted({str(b.get("source")) for b in blocks}),
        "training_kwh_avoided": None if any(a is None for a in avoided) else float(sum(avoided)),
    }
