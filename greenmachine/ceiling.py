"""`greenmachine ceiling`: how well a predictor TRAINED on the benchmark's accuracies ranks random samples.

Why: a zero-cost proxy sees an untrained network, so it cannot rank a random sample better than what the
architecture determines about its accuracy; the rest is training noise (one seed, one schedule). This measures
that reference from the data alone: a gradient-boosted regressor (scikit-learn's ``HistGradientBoostingRegressor``)
and a linear regression on the space's encoding (``SearchSpace.encode``: one-hot operations for TSS, log2 channel
counts for SSS) are fitted on one random half of the space's architectures, and ranked ``draws`` random samples of
``sample_size`` architectures from the other half. Their Kendall tau, mean and standard deviation over the draws,
is the figure a proxy would have to reach to rank as well as a supervised predictor fitted on half the benchmark.

``ceiling --scores`` (:func:`proxy_gap`) asks the next question of one proxy's scores: what does the architecture
tell about accuracy that the proxy does not? Cross-fitted on the scored architectures, it compares the proxy alone,
the encoding alone and the encoding plus the proxy's rank, and names the encoding entries that the proxy's ranking
errors follow. A large gain from adding the encoding says the missing signal is in the architecture (a probe could
in principle find it); none says the rest is what the benchmark's single training run adds.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from greenmachine.errors import GreenmachineError
from greenmachine.proxies.fitness import rank_correlations


@dataclass(frozen=True)
class CeilingResult:
    space: str
    dataset: str
    trained_on: int
    sample_size: int
    draws: int
    boosted: tuple[float, float]  # Kendall tau on the held-out half's samples: mean, std (n-1)
    linear: tuple[float, float]


def encoding_ceiling(truth, space, dataset: str, sample_size: int = 2000, draws: int = 20,
                     seed: int = 0) -> CeilingResult:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import LinearRegression

    indices = np.flatnonzero(truth.available(dataset))
    X = np.array([space.encode(truth.archs[i]) for i in indices], dtype=np.float64)  # first: a space may have none
    if sample_size < 2 or draws < 1:
        raise GreenmachineError("ceiling: --sample-size must be at least 2 and --draws at least 1")
    if 2 * sample_size > len(indices):
        raise GreenmachineError(f"ceiling: --sample-size {sample_size} is more than half of the {len(indices)} "
                                f"architectures with {dataset} accuracy")
    y = truth.acc(dataset, indices)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(indices))
    train, test = order[: len(order) // 2], order[len(order) // 2:]
    models = {"boosted": HistGradientBoostingRegressor(random_state=seed), "linear": LinearRegression()}
    taus: dict[str, list[float]] = {name: [] for name in models}
    predictions = {}
    for name, model in models.items():
        model.fit(X[train], y[train])
        predictions[name] = model.predict(X[test])
    for _ in range(draws):
        pick = rng.choice(len(test), size=sample_size, replace=False)
        for name in models:
            taus[name].append(rank_correlations(predictions[name][pick], y[test][pick])[0])

    def stats(values: list[float]) -> tuple[float, float]:
        return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")

    return CeilingResult(space.name, dataset, len(train), sample_size, draws, stats(taus["boosted"]),
                         stats(taus["linear"]))


#: a cross-fitted comparison needs enough architectures per fold for the boosted trees to learn anything
MIN_SCORED = 50


@dataclass(frozen=True)
class GapResult:
    space: str
    dataset: str
    scored: int  # architectures with a finite score and an accuracy on ``dataset``
    dropped: int  # rows left out: no finite score
    folds: int
    proxy: float  # mean over the test folds of the Kendall tau of the proxy alone
    encoding: float  # ... of boosted trees on the encoding, fitted on the other folds' accuracies
    encoding_plus_proxy: float  # ... of boosted trees on the encoding and the proxy's rank
    missed: tuple[tuple[str, float], ...]  # encoding entries by |correlation| with (accuracy rank - proxy rank)


def read_scores(path: str | Path, column: str = "score") -> tuple[list[str], np.ndarray]:
    """The ``arch`` and ``column`` of a scores CSV (``heldout_scores.csv``, ``baselines.csv``, ``score --out``);
    a score that is empty or not finite is NaN (the caller drops it and says how many)."""
    path = Path(path)
    if not path.is_file():
        raise GreenmachineError(f"scores file not found: {path}")
    archs, scores = [], []
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            for needed in ("arch", column):
                if needed not in fields:
                    raise GreenmachineError(f"scores file {path} has no {needed!r} column (columns: {fields})")
            for row in reader:
                try:
                    value = float(row[column])
                except (TypeError, ValueError):
                    value = math.nan
                archs.append(row["arch"] or "")
                scores.append(value if math.isfinite(value) else math.nan)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise GreenmachineError(f"scores file {path} is malformed: {exc}") from None
    return archs, np.array(scores, dtype=np.float64)


def proxy_gap(truth, space, dataset: str, archs: list[str], scores: np.ndarray, folds: int = 2, seed: int = 0,
              top: int = 5, source: str = "the scores", plot: str | Path | None = None) -> GapResult:
    """Cross-fit, over ``folds`` random folds of the scored architectures, boosted trees on the encoding with and
    without the proxy's rank, and report each test fold's Kendall tau beside the proxy's own on that fold (means).

    The proxy enters as its rank over all scored architectures (no accuracy is used to make it), so the trees see
    the proxy's ordering and nothing of its scale. ``missed`` is the Pearson correlation of each encoding entry with
    the proxy's ranking error (accuracy rank minus proxy rank, both scaled to 0..1) over all scored architectures:
    a positive entry is one the proxy under-rates. ``plot``: a PNG of accuracy rank against proxy rank, the
    architectures with the first named entry marked (:func:`gap_png`)."""
    from scipy.stats import rankdata
    from sklearn.ensemble import HistGradientBoostingRegressor

    if folds < 2:
        raise GreenmachineError("ceiling: --folds must be at least 2")
    names = space.encoding_names()  # first: a space without an encoding says so
    finite = np.isfinite(scores)
    scored = [space.validate(a) for a, ok in zip(archs, finite) if ok]  # arch strings only, not --archs' indices
    indices = truth.parse_archs(scored, dataset, what=source) if scored else []
    if len(indices) < max(MIN_SCORED, 2 * folds):
        raise GreenmachineError(f"{source}: {len(indices)} architectures with a finite score; at least "
                                f"{max(MIN_SCORED, 2 * folds)} are needed")
    s = scores[finite]
    if np.ptp(s) == 0:
        raise GreenmachineError(f"{source}: every score is the same; the proxy ranks nothing")
    y = truth.acc(dataset, indices)
    X = np.array([space.encode(truth.archs[i]) for i in indices], dtype=np.float64)
    r = rankdata(s) / len(s)
    Xp = np.column_stack([X, r])
    order = np.random.default_rng(seed).permutation(len(indices))
    taus: dict[str, list[float]] = {"proxy": [], "encoding": [], "both": []}
    for test in np.array_split(order, folds):
        train = np.setdiff1d(order, test)
        taus["proxy"].append(rank_correlations(s[test], y[test])[0])
        for name, features in (("encoding", X), ("both", Xp)):
            model = HistGradientBoostingRegressor(random_state=seed).fit(features[train], y[train])
            taus[name].append(rank_correlations(model.predict(features[test]), y[test])[0])
    error = rankdata(y) / len(y) - r
    corr = []
    for j, name in enumerate(names):
        column = X[:, j]
        if np.ptp(column) > 0 and np.ptp(error) > 0:
            corr.append((name, float(np.corrcoef(column, error)[0, 1])))
    corr.sort(key=lambda item: -abs(item[1]))
    result = GapResult(space.name, dataset, len(indices), int((~finite).sum()), folds, float(np.mean(taus["proxy"])),
                       float(np.mean(taus["encoding"])), float(np.mean(taus["both"])), tuple(corr[:top]))
    if plot is not None:
        marked, label = None, ""
        if result.missed:
            name, value = result.missed[0]
            column = X[:, names.index(name)]
            binary = set(np.unique(column)) <= {0.0, 1.0}
            marked = column == 1.0 if binary else column > np.median(column)
            label = f"{name}{'' if binary else ' above its median'} (correlation with the error {value:+.2f})"
        gap_png(plot, result, r, rankdata(y) / len(y), marked, label)
    return result


def gap_png(path: str | Path, result: GapResult, proxy_rank: np.ndarray, accuracy_rank: np.ndarray,
            marked: np.ndarray | None, label: str = "") -> None:
    """Accuracy rank against proxy rank: points above the diagonal are under-rated by the proxy. The ``marked``
    architectures (those whose first named encoding entry is set, or above its median) are drawn in colour, so a
    blind spot shows as a coloured cloud off the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    rest = np.ones(len(proxy_rank), dtype=bool) if marked is None else ~marked
    ax.scatter(proxy_rank[rest], accuracy_rank[rest], s=4, c="0.6", alpha=0.5, label="the others", rasterized=True)
    if marked is not None:
        ax.scatter(proxy_rank[marked], accuracy_rank[marked], s=6, c="tab:red", alpha=0.6, rasterized=True,
                   label=label)
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set_xlabel("proxy rank (0..1)")
    ax.set_ylabel(f"{result.dataset} accuracy rank (0..1)")
    ax.set_title(f"{result.space}/{result.dataset}, {result.scored} architectures, Kendall tau ({result.folds}-fold):\n"
                 f"proxy {result.proxy:.3f}, encoding {result.encoding:.3f}, encoding + proxy "
                 f"{result.encoding_plus_proxy:.3f}", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
