"""Multi-dataset evolution (issue 12, part 1): one proxy, the same architectures, several datasets.

Real data, tiny sizes: 6 TSS networks at batch 8, population 6, 2 generations. The combined fitness is checked
against the per-dataset Kendall taus recomputed here from scratch (probes, tree evaluation, scipy's tau), not
against what the run itself reports.
"""

from __future__ import annotations

import json
import math

import pytest

from conftest import gm
from greenmachine.config import EvolveConfig, load_config
from greenmachine.errors import GreenmachineError
from greenmachine.probing.cache import probe_sample
from greenmachine.probing.terminals import ProbeBatch
from greenmachine.proxies.fitness import WORST_FITNESS, combine_taus, kendall_fitness
from greenmachine.proxies.primitives import evaluate
from greenmachine.proxies.proxyfile import load_proxy
from greenmachine.search.proxy_gp import HISTORY_FIELDS, ProxyEvolution, run_evolution
from greenmachine.workspace import probe_settings

DATASETS = ("cifar10", "cifar100")
TINY = EvolveConfig(datasets=DATASETS, sample_size=6, strata=3, population=6, generations=2, batch_size=8,
                    max_height=6, init_max_depth=4, seed=3)


def _strip(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def _direct_taus(tokens, truth, indices, data_dir, cache, seed=3, batch=8):
    """Each dataset's Kendall tau of a tree on ``indices``, recomputed outside the GP machinery."""
    out = {}
    for dataset in DATASETS:
        settings = probe_settings("tss", dataset, batch, seed, "cpu")
        probes = probe_sample([(i, truth.arch(i)) for i in indices], settings, data_dir, cache=cache)
        scores = evaluate(tokens, ProbeBatch(probes)).numpy()
        out[dataset] = kendall_fitness(scores, truth.acc(dataset, indices))
    return out


@pytest.mark.parametrize("rule", ["mean", "min"])
def test_combined_fitness_is_the_rule_over_per_dataset_taus(tmp_path, data_dir, tss_truth, cache, rule):
    config = TINY.override(combine=rule, generations=2 if rule == "mean" else 1)
    result = run_evolution(config, tss_truth, data_dir, tmp_path / rule, cache=cache)
    assert len(result.sample_indices) == 6
    for tokens, fitness in result.hall_of_fame:
        taus = _direct_taus(tokens, tss_truth, result.sample_indices, data_dir, cache)
        expected = combine_taus(list(taus.values()), rule)
        want = min(taus.values()) if rule == "min" else sum(taus.values()) / len(taus)
        if WORST_FITNESS not in taus.values():
            assert math.isclose(expected, want, abs_tol=1e-12)
        assert math.isclose(fitness, expected, abs_tol=1e-12), (tokens, fitness, taus)
    best_taus = _direct_taus(result.best_tokens, tss_truth, result.sample_indices, data_dir, cache)
    data = json.loads((tmp_path / rule / "proxy.json").read_text())
    assert data["datasets"] == list(DATASETS) and data["combine"] == rule and data["dataset"] == DATASETS[0]
    assert data["stratified_by"] == DATASETS[0] and data["config"]["datasets"] == list(DATASETS)
    assert data["dataset_taus"] == pytest.approx(best_taus, abs=1e-12)
    assert data["fitness"]["kendall_tau"] == pytest.approx(result.best_fitness, abs=0)
    # history: both combinations and every dataset's tau of the best tree, whichever rule selects
    last = result.history[-1]
    assert last["best"] == round(result.best_fitness, 6)
    assert last["best_mean_tau"] == round(sum(best_taus.values()) / 2, 6)
    assert last["best_min_tau"] == round(min(best_taus.values()), 6)
    for d in DATASETS:
        assert last[f"best_tau_{d}"] == round(best_taus[d], 6)
    header = (tmp_path / rule / "history.csv").read_text().splitlines()[0].split(",")
    assert header[: len(HISTORY_FIELDS)] == HISTORY_FIELDS and "best_tau_cifar100" in header


def test_each_dataset_averages_its_own_initialisations(tmp_path, data_dir, tss_truth, cache):
    """``inits = 2`` with several datasets: each dataset's tau is that of the tree's scores averaged over the two
    initialisations of its own images, recomputed here probe by probe."""
    import numpy as np

    from greenmachine.probing.probe import init_protocols

    result = run_evolution(TINY.override(generations=0, inits=2), tss_truth, data_dir, tmp_path / "i2", cache=cache)
    data = json.loads((tmp_path / "i2" / "proxy.json").read_text())
    assert data["probe"]["inits"] == 2
    indices = result.sample_indices
    for dataset in DATASETS:
        per_init = []
        for protocol in init_protocols(probe_settings("tss", dataset, 8, 3, "cpu"), 2):
            probes = probe_sample([(i, tss_truth.arch(i)) for i in indices], protocol, data_dir, cache=cache)
            per_init.append(evaluate(result.best_tokens, ProbeBatch(probes)).numpy())
        tau = kendall_fitness(np.mean(per_init, axis=0), tss_truth.acc(dataset, indices))
        assert data["dataset_taus"][dataset] == pytest.approx(tau, abs=1e-9), dataset


def test_resume_gives_the_uninterrupted_run(tmp_path, data_dir, tss_truth, cache):
    straight = run_evolution(TINY, tss_truth, data_dir, tmp_path / "straight", cache=cache)
    run_evolution(TINY.override(generations=1), tss_truth, data_dir, tmp_path / "stopped", cache=cache)
    resumed = run_evolution(TINY, tss_truth, data_dir, tmp_path / "stopped", cache=cache, resume=True)
    assert resumed.best_tokens == straight.best_tokens and resumed.best_fitness == straight.best_fitness
    assert _strip(resumed.history) == _strip(straight.history)
    assert resumed.hall_of_fame == straight.hall_of_fame
    a = json.loads((tmp_path / "straight" / "proxy.json").read_text())
    b = json.loads((tmp_path / "stopped" / "proxy.json").read_text())
    assert a["dataset_taus"] == b["dataset_taus"]
    # the fingerprint includes the datasets and the rule: another set or rule is another run
    with pytest.raises(GreenmachineError, match="other settings"):
        run_evolution(TINY.override(datasets=("cifar10", "ImageNet16-120")), tss_truth, data_dir,
                      tmp_path / "stopped", cache=cache, resume=True)
    with pytest.raises(GreenmachineError, match="other settings"):
        run_evolution(TINY.override(combine="min"), tss_truth, data_dir, tmp_path / "stopped", cache=cache,
                      resume=True)


# Measured with the code before multi-dataset evolution existed (same working tree, 2026-11-30):
# `greenmachine evolve --space tss --dataset cifar10 --sample-size 8 --batch-size 8 --population 6 --generations 2`
GOLDEN_INDICES = [1453, 4263, 7969, 8324, 8964, 10005, 12553, 14447]
GOLDEN_EXPRESSION = "k_logdet_sum(k_add(k_mul(relu_kernel, act_cosine), relu_kernel))"
GOLDEN_HISTORY = [(0.714286, -0.607143, -0.857143, 3, 6), (0.714286, 0.0, 0.035714, 0, 1),
                  (0.714286, 0.488095, 0.714286, 0, 0)]


def test_single_dataset_mode_is_unchanged(tmp_path, data_dir, tss_truth, cache):
    config = EvolveConfig(sample_size=8, batch_size=8, population=6, generations=2)
    problem = ProxyEvolution(config, tss_truth, data_dir, cache, None)
    assert problem.indices == GOLDEN_INDICES and not problem.multi and problem.history_fields == HISTORY_FIELDS
    # the fingerprint and proxy.json's config are those of before: old checkpoints still resume
    assert "datasets" not in config.to_dict() and "combine" not in config.to_dict()
    result = run_evolution(config, tss_truth, data_dir, tmp_path / "single", cache=cache)
    assert result.best_expression == GOLDEN_EXPRESSION
    assert [(r["best"], r["mean"], r["median"], r["invalid"], r["evaluations"]) for r in result.history] == GOLDEN_HISTORY
    assert set(result.history[0]) == set(HISTORY_FIELDS)
    data = json.loads((tmp_path / "single" / "proxy.json").read_text())
    assert not {"datasets", "combine", "dataset_taus"} & set(data) and "datasets" not in data["config"]


def test_configs(tmp_path):
    p = tmp_path / "multi.toml"
    p.write_text('space = "tss"\ndatasets = ["cifar100", "ImageNet16-120"]\ncombine = "min"\n')
    cfg = load_config(p).validate()
    assert cfg.datasets == ("cifar100", "ImageNet16-120") and cfg.dataset == "cifar100" and cfg.combine == "min"
    assert EvolveConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    p.write_text('dataset = "cifar10"\ndatasets = ["cifar100", "cifar10"]\n')
    with pytest.raises(GreenmachineError, match="mutually exclusive"):
        load_config(p)
    for bad, match in ((dict(datasets=("cifar10",)), "two or more"), (dict(datasets=("cifar10", "cifar10")), "twice"),
                       (dict(datasets=("cifar10", "mnist")), "unknown dataset 'mnist'"),
                       (dict(combine="median"), "combine must be one of"),
                       (dict(combine="min"), "multi-dataset evolution only")):
        with pytest.raises(GreenmachineError, match=match):
            EvolveConfig(**bad).validate()
    with pytest.raises(GreenmachineError, match="ground truth for"):
        EvolveConfig(space="ecnas-4v", datasets=("cifar10", "cifar100")).validate()


@pytest.mark.parametrize("args, message", [
    (["--datasets", "cifar10,mnist"], "unknown dataset 'mnist'"),
    (["--datasets", "cifar10,,cifar100"], "an empty name"),
    (["--datasets", "cifar10,cifar100", "--dataset", "cifar10"], "mutually exclusive"),
    (["--datasets", "cifar10"], "two or more"),
    (["--datasets", "cifar10,cifar10"], "twice"),
    (["--dataset", "cifar10", "--combine", "min"], "multi-dataset evolution only"),
    (["--space", "ecnas-4v", "--datasets", "cifar10,cifar100"], "ground truth for"),
])
def test_bad_datasets_are_one_line_errors(tmp_path, env, capsys, args, message):
    code, out, err = gm(capsys, "evolve", *args, "--out", tmp_path / "run", "--quiet")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists()


def test_cli_multi_run_and_score_on_one_dataset(tmp_path, env, capsys):
    run = tmp_path / "multi"
    code, out, err = gm(capsys, "evolve", "--space", "tss", "--datasets", "cifar10,cifar100", "--combine", "min",
                        "--sample-size", 6, "--batch-size", 8, "--population", 4, "--generations", 1, "--seed", 3,
                        "--out", run, "--quiet")
    assert code == 0, err
    proxy = load_proxy(run / "proxy.json")
    data = json.loads((run / "proxy.json").read_text())
    assert data["combine"] == "min" and proxy.dataset == "cifar10"
    assert f"best_kendall_tau={min(data['dataset_taus'].values()):.4f}" in out
    # `score --dataset` of the multi-dataset proxy, on its own evolution sample, gives that dataset's tau back
    archs = ",".join(str(i) for i in proxy.sample_indices)
    for dataset in DATASETS:
        code, out, err = gm(capsys, "score", run / "proxy.json", "--dataset", dataset, "--archs", archs, "--quiet")
        assert code == 0, err
        assert f"dataset={dataset}" in out
        assert f"kendall_tau={data['dataset_taus'][dataset]:.4f}" in out


def test_the_summary_title_names_every_dataset(tmp_path):
    from types import SimpleNamespace

    from greenmachine.config import EvolveConfig
    from greenmachine.report import evolution_summary

    result = SimpleNamespace(history=[{"generation": 1, "evaluations": 4}], best_fitness=0.5, best_expression="c_one",
                             sample_indices=[1, 2], probe_seconds=1.0, seconds=2.0, out_dir=tmp_path)
    multi = EvolveConfig(dataset="cifar10", datasets=("cifar10", "cifar100"))
    assert evolution_summary(multi, result).title == "greenmachine evolve: tss / cifar10 + cifar100"
    assert evolution_summary(EvolveConfig(), result).title == "greenmachine evolve: tss / cifar10"
