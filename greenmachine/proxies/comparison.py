"""Hand-designed baselines and evolved proxies side by side, on the same networks, images and seeds.

For every architecture the network is built and initialised once (the seed of the probe protocol), the probe
minibatch is the same for all, each baseline scores a copy of that network, and each evolved proxy is
evaluated on a probe of that same network. Per-architecture scores are appended to the CSV as they come, so an
interrupted comparison keeps every finished row.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np

from greenmachine.proxies.baselines import ProxyInputs, get_proxy, load_all
from greenmachine.energy.meter import Meter
from greenmachine.executor import Executor
from greenmachine.probing.cache import JobResult, ProbeCache, metered_map, probe_sample
from greenmachine.probing.datasets import DATASETS, probe_batch
from greenmachine.probing.memory import trim_heap
from greenmachine.errors import GreenmachineError
from greenmachine.proxies.fitness import rank_correlations
from greenmachine.files import write_text_atomic
from greenmachine.proxies.primitives import evaluate
from greenmachine.probing.probe import GROUPS, ProbeSettings, init_network, init_protocols
from greenmachine.proxies.proxyfile import Proxy
from greenmachine.probing.chunking import estimated_bytes, plan_chunks, split
from greenmachine.proxies.scoring import CHUNK, probe_passes
from greenmachine.probing.terminals import ProbeBatch
from greenmachine.spaces.truth import GroundTruth
from greenmachine.ui import Reporter

# the NASLib / foresight proxies plus #params, FLOPs and the two recent ones; the CSV has one column each
DEFAULT_PROXIES = ("naswot", "synflow", "snip", "grasp", "fisher", "grad_norm", "jacov", "zen", "params", "flops",
                   "zico", "meco")


@dataclass
class ProxyStats:
    name: str
    kind: str  # "baseline" or "evolved"
    kendall_tau: float
    spearman_rho: float
    valid: int  # networks with a finite score (the correlations use these)
    seconds_per_network: float


@dataclass
class Comparison:
    indices: list[int]
    archs: list[str]
    accuracy: np.ndarray
    scores: dict[str, np.ndarray]
    stats: list[ProxyStats] = field(default_factory=list)

    def ranked(self) -> list[ProxyStats]:
        return sorted(self.stats, key=lambda s: -2.0 if math.isnan(s.kendall_tau) else s.kendall_tau, reverse=True)


def check_proxy_names(names: Sequence[str]) -> list[str]:
    registry = load_all()
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise GreenmachineError(f"unknown baseline proxy {', '.join(unknown)}; known: {', '.join(registry)}")
    if len(set(names)) != len(names):
        raise GreenmachineError("a baseline proxy is named twice")
    return list(names)


def proxy_stats(name: str, kind: str, scores: np.ndarray, accuracy: np.ndarray, seconds: float) -> ProxyStats:
    """Rank correlations over the networks the proxy could score. An infinite score is an ordering (NASWOT gives
    -inf to a network whose ReLU patterns make its kernel singular: it ranks last), so +-inf become the highest
    and lowest ranks; NaN is no score at all, and those networks are left out and not counted as valid."""
    ok = ~np.isnan(scores)
    ranked = scores[ok].copy()
    finite = np.isfinite(ranked)
    if finite.any():
        lo, hi = ranked[finite].min(), ranked[finite].max()
        ranked[ranked == -np.inf], ranked[ranked == np.inf] = lo - 1.0, hi + 1.0
    tau, rho = rank_correlations(ranked, accuracy[ok]) if ok.sum() >= 2 else (math.nan, math.nan)
    return ProxyStats(name, kind, tau, rho, int(ok.sum()), seconds / max(1, len(scores)))


def _baseline_job(settings: ProbeSettings, dataset: str, images, labels, names: tuple[str, ...],
                  job: tuple[int, str]) -> JobResult:
    """Every baseline on one network: built and initialised once (the protocol's seed), each proxy on it in turn.
    A proxy that fails on a network gives NaN there (counted as invalid); the comparison goes on."""
    index, arch = job
    cpu0 = time.process_time()
    net = init_network(settings.space, arch, dataset, settings.init_seed, index).to(settings.device)
    inputs = ProxyInputs(net, images, labels, DATASETS[dataset].num_classes, seed=settings.init_seed + index)
    scores: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for name in names:
        t0 = time.perf_counter()
        try:
            scores[name] = float(get_proxy(name)(inputs))
        except (RuntimeError, ValueError, ArithmeticError, np.linalg.LinAlgError):
            scores[name] = math.nan
        seconds[f"baseline:{name}"] = time.perf_counter() - t0
    del inputs, net
    trim_heap()  # see probing/memory.py
    return JobResult(index, arch, scores, seconds, time.process_time() - cpu0, os.getpid())


def compare(
    truth: GroundTruth,
    dataset: str,
    indices: Sequence[int],
    settings: ProbeSettings,
    data_dir: str | Path,
    proxies: Sequence[str] = DEFAULT_PROXIES,
    evolved: dict[str, Proxy] | None = None,
    out_csv: str | Path | None = None,
    cache: ProbeCache | None = None,
    reporter: Reporter | None = None,
    executor: Executor | None = None,
    meter: Meter | None = None,
    inits: int = 1,
) -> Comparison:
    """Score the baselines and the evolved proxies on the same networks, in chunks of at most ``CHUNK`` networks and
    the byte budget of ``probing/chunking.py``.

    Per chunk, the evolved proxies are evaluated on one probe of each network of the chunk (``probe_sample``:
    cached or probed, one meter window) that holds the union of the passes they need, so that without a cache
    ``--include`` three proxies probes every network once, not three times; each proxy is charged the seconds of
    its own passes and of its evaluation. Then the baselines run network by network through the same metered loop
    (``metered_map``, one window per chunk) and each network's CSV row is appended as its baselines finish. With
    ``inits`` > 1 that is done once per initialisation and minibatch
    (:func:`~greenmachine.probing.probe.init_protocols`), and every proxy's score of a network is the mean over
    them, as :func:`~greenmachine.proxies.scoring.score_tokens` does."""
    reporter = reporter or Reporter(quiet=True)
    evolved = evolved or {}
    proxies = check_proxy_names(proxies)
    clash = set(proxies) & set(evolved)
    if clash:
        raise GreenmachineError(f"an evolved proxy is named like a baseline: {', '.join(sorted(clash))}")
    protocols = init_protocols(settings, inits, str(data_dir))
    jobs = []
    for protocol in protocols:
        images, labels = probe_batch(str(data_dir), dataset, protocol.batch_size, protocol.batch_seed)
        images, labels = images.to(protocol.device), labels.to(protocol.device)
        jobs.append(partial(_baseline_job, protocol, dataset, images, labels, tuple(proxies)))
    columns = [*proxies, *evolved]
    values = {c: [] for c in columns}
    seconds = {c: 0.0 for c in columns}
    items = [(int(i), truth.arch(int(i))) for i in indices]
    accuracy = truth.acc(dataset, [i for i, _ in items])
    acc_of = {i: float(a) for (i, _), a in zip(items, accuracy)}
    passes = {name: probe_passes(proxy.tokens) for name, proxy in evolved.items()}
    union = tuple(g for g in GROUPS if any(g in p for p in passes.values()))
    writer = _RowWriter(out_csv, columns)
    advance = reporter.task("scoring proxies", len(items) * len(protocols))
    try:
        lengths = plan_chunks(estimated_bytes(truth, dataset, [i for i, _ in items]), max_networks=CHUNK)
        for chunk in split(items, lengths):
            chunk_values = {c: np.zeros((len(protocols), len(chunk))) for c in columns}
            for r, (protocol, job) in enumerate(zip(protocols, jobs)):
                if evolved:
                    probes = probe_sample(chunk, protocol, data_dir, groups=union, cache=cache, executor=executor,
                                          meter=meter)
                    for name in evolved:
                        seconds[name] += sum(p.pass_seconds.get(g, 0.0) for p in probes for g in passes[name])
                    batch = ProbeBatch(probes, device=protocol.device, consume=True)
                    del probes
                    for name, proxy in evolved.items():
                        t0 = time.perf_counter()
                        chunk_values[name][r] = evaluate(proxy.tokens, batch).cpu().numpy()
                        seconds[name] += time.perf_counter() - t0
                    del batch
                if proxies:
                    results = metered_map(job, chunk, executor, meter, label="baselines")
                else:
                    results = (JobResult(i, a, {}, {}, 0.0, os.getpid()) for i, a in chunk)
                for pos, result in enumerate(results):
                    for name in proxies:
                        chunk_values[name][r, pos] = result.value[name]
                        seconds[name] += result.pass_seconds[f"baseline:{name}"]
                    if r == len(protocols) - 1:  # every initialisation of this network is scored: its row
                        for c in columns:
                            values[c].append(float(chunk_values[c][:, pos].mean()))
                        writer.write(result.index, result.arch, acc_of[result.index],
                                     [values[c][-1] for c in columns])
                    advance()
    finally:
        writer.close()
    scores = {c: np.array(v, dtype=np.float64) for c, v in values.items()}
    result = Comparison([i for i, _ in items], [a for _, a in items], accuracy, scores)
    result.stats = [proxy_stats(c, "evolved" if c in evolved else "baseline", scores[c], accuracy, seconds[c])
                    for c in columns]
    return result


class _RowWriter:
    """Appends one CSV row per architecture (index, arch, accuracy, then one column per proxy)."""

    def __init__(self, path: str | Path | None, columns: list[str]):
        self._f = None
        if path is None:
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "w", newline="")
        self._w = csv.writer(self._f)
        self._w.writerow(["index", "arch", "accuracy", *columns])

    def write(self, index: int, arch: str, acc: float, vals: list[float]) -> None:
        if self._f is not None:
            self._w.writerow([index, arch, repr(float(acc)), *(repr(v) for v in vals)])
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


def write_summary(result: Comparison, path: str | Path, meta: dict, energy: dict | None = None) -> None:
    """``table.summary.json``: the run's settings, one entry per proxy, and the run's ``energy`` block."""
    data = {**meta, "architectures": len(result.indices),
            "proxies": [{"name": s.name, "kind": s.kind,
                         "kendall_tau": None if math.isnan(s.kendall_tau) else s.kendall_tau,
                         "spearman_rho": None if math.isnan(s.spearman_rho) else s.spearman_rho,
                         "valid": s.valid, "seconds_per_network": s.seconds_per_network} for s in result.ranked()]}
    if energy is not None:
        data["energy"] = energy
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def scatter_figure(result: Comparison, path: str | Path, title: str) -> str | None:
    """Score (as a rank percentile, since raw scores span dozens of orders of magnitude) against accuracy for
    the best evolved proxy and the best baseline; returns the path, or None when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import rankdata

    picks = []
    for kind in ("evolved", "baseline"):
        ranked = [s for s in result.ranked() if s.kind == kind and s.valid >= 2]
        if ranked:
            picks.append(ranked[0])
    if not picks:
        return None
    fig, axes = plt.subplots(1, len(picks), figsize=(5 * len(picks), 4), squeeze=False)
    for ax, s in zip(axes[0], picks):
        scores = result.scores[s.name]
        ok = np.isfinite(scores)
        pct = rankdata(scores[ok]) / ok.sum() * 100
        ax.scatter(pct, result.accuracy[ok], s=8, alpha=0.6)
        ax.set_xlabel(f"{s.name} score (rank percentile)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{s.kind}: {s.name}  tau={s.kendall_tau:.3f}")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)
