"""`greenmachine ceiling`: how well a predictor TRAINED on the benchmark's accuracies ranks random samples.

Why: a zero-cost proxy sees an untrained network, so it cannot rank a random sample better than what the
architecture determines about its accuracy; the rest is training noise (one seed, one schedule). This measures
that reference from the data alone: a gradient-boosted regressor (scikit-learn's ``HistGradientBoostingRegressor``)
and a linear regression on the space's encoding (``SearchSpace.encode``: one-hot operations for TSS, log2 channel
counts for SSS) are fitted on one random half of the space's architectures, and ranked ``draws`` random samples of
``sample_size`` architectures from the other half. Their Kendall tau, mean and standard deviation over the draws,
is the figure a proxy would have to reach to rank as well as a supervised predictor fitted on half the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

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
