"""Score a proxy on architectures it never saw: probe each network afresh (or from the cache), rank, correlate."""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from greenmachine.energy.meter import Meter
from greenmachine.probing.cache import ProbeCache, probe_sample
from greenmachine.probing.chunking import MAX_NETWORKS, estimated_bytes, plan_chunks, split
from greenmachine.executor import Executor, SerialExecutor
from greenmachine.files import atomic_open
from greenmachine.proxies.fitness import rank_correlations
from greenmachine.proxies.primitives import evaluate, terminals_of
from greenmachine.probing.probe import ProbeSettings, groups_for, init_protocols
from greenmachine.probing.terminals import ProbeBatch
from greenmachine.spaces.truth import GroundTruth
from greenmachine.ui import Reporter

CHUNK = MAX_NETWORKS  # networks per probe batch at most; chunks are also bounded by bytes (probing/chunking.py)


@dataclass
class ScoreResult:
    indices: list[int]
    archs: list[str]
    scores: np.ndarray
    accuracy: np.ndarray
    kendall_tau: float
    spearman_rho: float
    probe_seconds: float
    seconds: float
    inits: int = 1  # initialisations each score is the mean of


def probe_passes(tokens: Sequence[str]) -> tuple[str, ...]:
    """The probe passes a tree needs; a tree of constants still needs the layer structure of the ce pass."""
    return groups_for(terminals_of(tokens)) or ("ce",)


def score_tokens(
    tokens: Sequence[str],
    truth: GroundTruth,
    dataset: str,
    indices: Sequence[int],
    settings: ProbeSettings,
    data_dir: str | Path,
    cache: ProbeCache | None = None,
    executor: Executor | None = None,
    reporter: Reporter | None = None,
    meter: Meter | None = None,
    inits: int = 1,
) -> ScoreResult:
    """Probe only the passes the tree needs, in byte-bounded chunks, and evaluate the tree on every network.

    With ``inits`` > 1 every network is probed under that many initialisations and minibatches
    (:func:`~greenmachine.probing.probe.init_protocols`) and its score is the mean of the tree's scores on them (a
    NaN or an infinity in one carries into the mean). With a ``meter``, each chunk's probing is one meter window
    (``probe_sample``); tree evaluation is counted in the meter's total, outside the probing windows."""
    start = time.perf_counter()
    reporter = reporter or Reporter(quiet=True)
    executor = executor or SerialExecutor()
    protocols = init_protocols(settings, inits, str(data_dir))
    groups = probe_passes(tokens)
    items = [(int(i), truth.arch(int(i))) for i in indices]
    scores: list[np.ndarray] = []
    probe_seconds = 0.0
    advance = reporter.task("probing and scoring", len(items) * len(protocols))
    # chunks bounded by count and by estimated terminal bytes: a NAS-Bench-101 sample no longer needs ~16 GB
    lengths = plan_chunks(estimated_bytes(truth, dataset, [i for i, _ in items]), max_networks=CHUNK)
    for chunk in split(items, lengths):
        per_init = []
        for protocol in protocols:
            probed = [0]

            def progress(it, total):
                for probe in it:
                    probed[0] += 1
                    advance()
                    yield probe

            probes = probe_sample(chunk, protocol, data_dir, groups=groups, cache=cache, executor=executor,
                                  progress=progress, meter=meter)
            for _ in range(len(chunk) - probed[0]):  # the networks that came from the cache
                advance()
            probe_seconds += sum(p.seconds for p in probes)
            batch = ProbeBatch(probes, device=protocol.device, consume=True)
            del probes
            per_init.append(evaluate(tokens, batch).cpu().numpy())
        scores.append(np.mean(per_init, axis=0))
    values = np.concatenate(scores)
    accuracy = truth.acc(dataset, [i for i, _ in items])
    tau, rho = rank_correlations(values, accuracy)
    return ScoreResult([i for i, _ in items], [a for _, a in items], values, accuracy, tau, rho, probe_seconds,
                       time.perf_counter() - start, len(protocols))


def write_scores_csv(result: ScoreResult, path: str | Path) -> None:
    with atomic_open(path, newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "arch", "score", "accuracy"])
        for i, a, s, acc in zip(result.indices, result.archs, result.scores, result.accuracy):
            w.writerow([i, a, repr(float(s)), repr(float(acc))])
