"""Pick one tree among several evolution runs, by how each ranks the *other* runs' evolution samples.

Why: the GP converges to a different tree on every seed, and on TSS CIFAR-10 which tree a run finds moves the held-out
Kendall tau more than any change to the fitness (seeds of one setting span 0.775-0.819 on the same 2,000 networks).
A run's own fitness is optimistic (the tree was selected on those networks), and the fitnesses of two runs are taus on
two different samples. Here every candidate is scored on every other candidate's evolution sample, with that sample's
own probe protocol (its minibatch, initialisation, spectra and initialisation count), so all candidates are compared
on the same networks and the same probes, none of which it was fitted to. The criterion is the mean of those taus.

What the chosen tree has seen: the accuracies of its own sample (the GP) and of every other candidate's sample (the
choice). The written proxy file therefore records the union of the candidates' samples as its ``sample_indices``, so
that ``score --exclude-evolution-sample``, ``baselines --exclude-evolution-sample`` and ``quality`` transfers keep
every one of those architectures out of a held-out figure. The choice costs K evolutions instead of one; the scoring
itself reads the probes those evolutions cached (the same networks and protocols), or probes them again without a cache.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from greenmachine.energy.meter import Meter
from greenmachine.errors import GreenmachineError
from greenmachine.executor import Executor
from greenmachine.files import atomic_open
from greenmachine.probing.cache import ProbeCache
from greenmachine.proxies.comparison import compare, proxy_stats
from greenmachine.proxies.proxyfile import Proxy
from greenmachine.spaces.truth import GroundTruth
from greenmachine.ui import Reporter
from greenmachine.workspace import proxy_protocol

CRITERION = "mean Kendall tau on the other candidates' evolution samples (each minus the candidate's own sample)"


@dataclass
class Selection:
    """``taus[i][j]``: candidate i on candidate j's sample (minus i's own networks), under j's probe protocol;
    the diagonal is i on its own sample under its own protocol (its fitness, for reference; not in the criterion)."""

    names: list[str]
    dataset: str
    taus: np.ndarray
    networks: np.ndarray  # networks behind each tau
    criterion: np.ndarray  # mean of the off-diagonal row
    chosen: int

    @property
    def chosen_name(self) -> str:
        return self.names[self.chosen]


def seen_indices(candidates: dict[str, Proxy]) -> list[int]:
    """Every architecture whose accuracy a choice among ``candidates`` has seen: the union of their samples."""
    return sorted({i for p in candidates.values() for i in p.sample_indices})


def check_candidates(candidates: dict[str, Proxy], dataset: str | None) -> tuple[str, str]:
    """The space and the validation dataset of a selection; one-line errors for what cannot be compared."""
    if len(candidates) < 2:
        raise GreenmachineError(f"select needs at least two proxy files to choose between, got {len(candidates)}")
    for name, proxy in candidates.items():
        if len(proxy.sample_indices) < 2:
            raise GreenmachineError(f"{name} records no evolution sample (sample_indices), so no other candidate "
                                    f"can be validated on it; give proxy files written by evolve")
    spaces = sorted({str(p.space) for p in candidates.values()})
    if len(spaces) != 1 or spaces[0] == "None":
        raise GreenmachineError(f"the candidates must come from one search space, got {', '.join(spaces)}")
    if dataset is None:
        datasets = sorted({str(p.dataset) for p in candidates.values()})
        if len(datasets) != 1 or datasets[0] == "None":
            raise GreenmachineError(f"the candidates were evolved on {', '.join(datasets)}; pass --dataset to "
                                    f"validate them on one")
        dataset = datasets[0]
    return spaces[0], dataset


def select_proxy(
    truth: GroundTruth,
    candidates: dict[str, Proxy],
    data_dir: str | Path,
    device: str = "cpu",
    dataset: str | None = None,
    cache: ProbeCache | None = None,
    reporter: Reporter | None = None,
    executor: Executor | None = None,
    meter: Meter | None = None,
) -> Selection:
    """Score every candidate on every candidate's evolution sample (one :func:`compare` per sample, so the trees
    share each network's probe) and choose the best mean over the samples that are not its own. Ties go to the
    candidate given first. ``dataset`` ranks the samples by another dataset's accuracy and probes that dataset's
    images (a choice for transfer); by default the candidates' own dataset."""
    space, dataset = check_candidates(candidates, dataset)
    names = list(candidates)
    k = len(names)
    taus = np.full((k, k), math.nan)
    networks = np.zeros((k, k), dtype=int)
    for j, owner in enumerate(names):
        sample = truth.parse_archs([str(i) for i in candidates[owner].sample_indices], dataset,
                                   f"{owner}'s sample_indices")
        settings, inits = proxy_protocol(candidates[owner], space, dataset, device, data_dir)
        if reporter is not None:
            reporter.emit(f"validating on {owner}'s sample: {len(sample)} networks, probe seed "
                          f"{settings.batch_seed}, {inits} initialisation(s)")
        result = compare(truth, dataset, sample, settings, data_dir, proxies=(), evolved=candidates, cache=cache,
                         reporter=reporter, executor=executor, meter=meter, inits=inits)
        positions = {idx: p for p, idx in enumerate(result.indices)}
        for i, name in enumerate(names):
            own = set(candidates[name].sample_indices) if i != j else set()
            keep = [positions[idx] for idx in result.indices if idx not in own]
            # as `baselines --include` ranks them: +-inf are extreme ranks, NaN is no score
            stats = proxy_stats(name, "evolved", result.scores[name][keep], result.accuracy[keep], 0.0)
            taus[i, j] = stats.kendall_tau
            networks[i, j] = len(keep)
    off = ~np.eye(k, dtype=bool)
    if np.all(np.isnan(taus[off])):
        raise GreenmachineError("no candidate ranks any other candidate's sample (every score failed)")
    # a sample a tree cannot rank counts as the worst tau, -1
    criterion = np.array([np.where(np.isnan(row[m]), -1.0, row[m]).mean() for row, m in zip(taus, off)])
    chosen = int(np.argmax(criterion))  # the first of equal maxima
    return Selection(names, dataset, taus, networks, criterion, chosen)


def chosen_proxy(selection: Selection, candidates: dict[str, Proxy], paths: Sequence[str | Path]) -> Proxy:
    """The chosen tree as a proxy file: its own probe protocol and seed, the union of all the candidates' samples as
    the architectures it has seen (module docstring), and the selection itself under ``selection``."""
    proxy = candidates[selection.chosen_name]
    record = {
        "criterion": CRITERION,
        "dataset": selection.dataset,
        "chosen": selection.chosen_name,
        "own_sample_indices": list(proxy.sample_indices),
        "candidates": [
            {"name": n, "path": str(p), "expression": candidates[n].expression, "fitness": candidates[n].fitness,
             "criterion": _finite(selection.criterion[i]),
             "taus": {selection.names[j]: _finite(selection.taus[i, j]) for j in range(len(selection.names))},
             "networks": {selection.names[j]: int(selection.networks[i, j]) for j in range(len(selection.names))}}
            for i, (n, p) in enumerate(zip(selection.names, paths))
        ],
    }
    return Proxy(tokens=list(proxy.tokens), space=proxy.space, dataset=proxy.dataset, fitness=proxy.fitness,
                 sampling=proxy.sampling, sample_indices=seen_indices(candidates), seed=proxy.seed,
                 probe=dict(proxy.probe), config=dict(proxy.config), extra={"selection": record})


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def write_selection_csv(selection: Selection, candidates: dict[str, Proxy], path: str | Path) -> None:
    """One row per candidate: its fitness, the criterion, whether chosen, its tau on each sample and how many
    networks that tau ranks."""
    names = selection.names
    with atomic_open(path, newline="") as f:
        w = csv.writer(f)
        w.writerow(["candidate", "fitness", "criterion", "chosen", *[f"tau_on_{n}" for n in names],
                    *[f"networks_on_{n}" for n in names], "expression"])
        for i, name in enumerate(names):
            fit = candidates[name].fitness
            w.writerow([name, "" if fit is None else repr(float(fit)), repr(float(selection.criterion[i])),
                        int(i == selection.chosen),
                        *["" if math.isnan(t) else repr(float(t)) for t in selection.taus[i]],
                        *[int(n) for n in selection.networks[i]], candidates[name].expression])
