"""Executors: serial, process and Ray give identical probes, fitness values, scores and evolutions; bad Ray setups
are one-line errors.

Ray starts in seconds to tens of seconds on a busy 2-core machine, so this module starts one local instance
(``ray.init(num_cpus=2)``) for all its tests and shuts it down after; every workload is a handful of networks at
batch 16.
"""

from __future__ import annotations

import inspect
import os
import sys

import numpy as np
import pytest

from greenmachine.cli import cli, main
from greenmachine.errors import GreenmachineError
from greenmachine.executor import ProcessExecutor, _check_reachable, RayExecutor, SerialExecutor, make_executor, to_cpu
from greenmachine.probing.cache import ProbeCache, probe_sample
from greenmachine.probing.probe import NetworkProbe
from greenmachine.proxies.classic import classic_tokens
from greenmachine.proxies.fitness import kendall_fitness
from greenmachine.proxies.primitives import evaluate_chunks
from greenmachine.proxies.scoring import score_tokens
from greenmachine.probing.terminals import chunked_batches
from greenmachine.search.shards import ShardedFitness, shard_bounds
from greenmachine.workspace import probe_settings

ray = pytest.importorskip("ray")  # installed by make install; a missing Ray is tested below with the import blocked

INDICES = [3, 17, 140, 950, 2024, 5000, 7777, 12000, 15000]
TREES = [
    "a_sum_layers(e_min(corr_eig))",
    "k_logdet_sum(relu_kernel)",
    "w_sum_layers(w_sum(w_abs(w_mul(weight, synflow_grad))))",
    "w_sum_layers(w_norm(grad))",
]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the whole module (start-up is slow), shut down after."""
    if not ray.is_initialized():
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # silence a future-default notice
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def one_thread():
    """Every worker runs torch on one thread; the serial reference does too here. Float64 reductions (synflow's
    convolutions) are split by thread count, so bitwise equality holds at equal threads per worker, as in a run
    with GREENMACHINE_THREADS=1 (conftest gives the other tests two)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def settings(data_dir):
    return probe_settings("tss", "cifar10", 16, 0, "cpu", data_dir=data_dir)


def _items(truth):
    return [(i, truth.arch(i)) for i in INDICES]


def _tokens(expression: str) -> list[str]:
    from greenmachine.proxies.primitives import parse_expression

    return parse_expression(expression)


def test_shard_bounds_are_whole_chunks_in_order():
    assert shard_bounds(200, 50, 2) == [(0, 100), (100, 200)]
    assert shard_bounds(200, 50, 3) == [(0, 50), (50, 150), (150, 200)]
    assert shard_bounds(9, 3, 8) == [(0, 3), (3, 6), (6, 9)]  # never more shards than chunks
    assert shard_bounds(7, 50, 2) == [(0, 7)]
    for n, chunk, k in [(200, 50, 2), (123, 10, 4), (5, 2, 5)]:
        bounds = shard_bounds(n, chunk, k)
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        assert all(a % chunk == 0 for a, _ in bounds)


def test_make_executor_kinds_and_errors():
    assert isinstance(make_executor(1), SerialExecutor)
    pool = make_executor(2)
    try:
        assert isinstance(pool, ProcessExecutor) and pool.workers == 2
    finally:
        pool.close()
    with pytest.raises(GreenmachineError, match="executor must be one of"):
        make_executor(1, "dask")
    with pytest.raises(GreenmachineError, match="needs --executor ray"):
        make_executor(1, "process", "auto")


def _main(argv, capsys) -> tuple[int, list[str]]:
    """Run the CLI as the console script does; (exit code, stderr lines)."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    return exit_.value.code, capsys.readouterr().err.strip().splitlines()


def test_missing_ray_is_one_line_error(monkeypatch, env, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(GreenmachineError, match="needs Ray, which is not installed"):
        make_executor(2, "ray")
    message = "error: --executor ray needs Ray, which is not installed: pip install 'ray==2.54.1' (or make install)"
    for argv in (["evolve", "--sample-size", "4", "--generations", "0", "--population", "4", "--out",
                  str(tmp_path / "run")],
                 ["baselines", "--sample-size", "3", "--proxies", "params"],
                 ["search", "--objective", "params", "--budget", "8", "--out", str(tmp_path / "search")]):
        assert _main([*argv, "--executor", "ray", "--quiet"], capsys) == (2, [message]), argv
    assert not (tmp_path / "run").exists() and not (tmp_path / "search").exists()


def test_unreachable_ray_address_is_one_line_error(env, tmp_path, capsys):
    code, lines = _main(["evolve", "--sample-size", "4", "--generations", "0", "--population", "4", "--executor",
                         "ray", "--ray-address", "127.0.0.1:1", "--quiet", "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: --ray-address 127.0.0.1:1: no Ray cluster answers"), lines
    with pytest.raises(GreenmachineError, match="expected auto, HOST:PORT"):
        _check_reachable("nonsense")
    assert not (tmp_path / "run").exists()


def test_to_cpu_walks_containers():
    import torch
    from greenmachine.probing.probe import NetworkProbe

    p = NetworkProbe(1, "a", {"weight": [torch.ones(2)]}, 0.5)
    out = to_cpu({"x": [p, (torch.zeros(1),)]})
    assert out["x"][0] is p and out["x"][0].tensors["weight"][0].device.type == "cpu"


@pytest.mark.slow  # starts a local Ray (GCS, raylet, workers): many minutes on a loaded 2-core machine
def test_probes_and_sharded_fitness_identical_on_every_executor(local_ray, tss_truth, data_dir, settings):
    """Probing through each executor gives the same tensors, on the CPU; fitness sharded over 1 or 2 shards
    (serial, forked processes, Ray actors) gives the same per-network scores and Kendall tau as the unsharded
    evaluation, and counts and memoises nothing while scoring."""
    items = _items(tss_truth)
    accuracy = tss_truth.acc("cifar10", INDICES)
    keys = [" ".join(_tokens(t)) for t in TREES + ["w_sum_layers(w_sum(w_log(w_abs(grad))))"]]

    reference = probe_sample(items, settings, data_dir, cache=ProbeCache(None))
    copies = [[{k: list(v) for k, v in p.tensors.items()} for p in reference] for _ in range(3)]
    batches = chunked_batches(reference, 3)  # the unsharded evaluation: every chunk in this process
    expected = np.stack([evaluate_chunks(k.split(), batches).numpy() for k in keys])

    executors = [SerialExecutor(), ProcessExecutor(2), RayExecutor()]
    try:
        for ex, tensors in zip(executors, copies):
            if ex.kind == "serial":
                probes = [NetworkProbe(i, a, t, 0.0) for (i, a), t in zip(items, tensors)]
            else:
                probes = probe_sample(items, settings, data_dir, cache=ProbeCache(None), executor=ex)
                for p, ref in zip(probes, tensors):
                    assert set(p.tensors) == set(ref)
                    for name in ref:
                        assert all(a.device.type == "cpu" and bool((a == b).all())
                                   for a, b in zip(p.tensors[name], ref[name])), (ex.kind, name)
            fit = ShardedFitness(probes, accuracy, ex, chunk=3)
            try:
                assert fit.shards == (1 if ex.kind == "serial" else 2)
                assert sum(fit.nbytes()) > 0
                np.testing.assert_array_equal(fit.scores(keys), expected, err_msg=ex.kind)
                assert fit.fitness_of(keys) == [kendall_fitness(row, accuracy) for row in expected]
                assert fit.evaluations == 0 and fit.memo == {}  # pure: nothing is counted or memoised by scoring
            finally:
                fit.close()
    finally:
        for ex in executors:
            ex.close()
    assert ray.is_initialized()  # the module's Ray was not shut down by an executor that did not start it


@pytest.mark.slow  # starts a local Ray (GCS, raylet, workers): many minutes on a loaded 2-core machine
def test_score_identical_on_every_executor(local_ray, tss_truth, data_dir, settings):
    tokens = _tokens("mul(log(w_mean_layers(w_std(synflow_grad))), a_sum_layers(e_min(corr_eig)))")
    results = []
    for ex in (SerialExecutor(), ProcessExecutor(2), RayExecutor(2)):
        try:
            results.append(score_tokens(tokens, tss_truth, "cifar10", INDICES[:4], settings, data_dir,
                                        cache=ProbeCache(None), executor=ex))
        finally:
            ex.close()
    for r in results[1:]:
        np.testing.assert_array_equal(r.scores, results[0].scores)
        assert r.kendall_tau == results[0].kendall_tau and r.indices == results[0].indices


def test_classic_tree_scores_do_not_depend_on_shard_count(tss_truth, data_dir, settings, cache):
    """More shards than workers would ever use: still the unsharded scores (chunks never straddle shards)."""
    items = _items(tss_truth)
    accuracy = tss_truth.acc("cifar10", INDICES)
    key = " ".join(classic_tokens("synflow"))
    ref = ShardedFitness(probe_sample(items, settings, data_dir, cache=cache), accuracy, None, chunk=2)
    pool = ProcessExecutor(3)
    try:
        fit = ShardedFitness(probe_sample(items, settings, data_dir, cache=cache), accuracy, pool, chunk=2)
        assert fit.shards == 3
        np.testing.assert_array_equal(fit.scores([key]), ref.scores([key]))
        fit.close()
    finally:
        pool.close()


def test_cli_commands_take_executor_options():
    from greenmachine.search.commands import search

    for command in (cli.commands["evolve"], cli.commands["score"], cli.commands["baselines"], search):
        names = {o for p in command.params for o in p.opts}
        assert {"--executor", "--ray-address", "--workers"} <= names, command.name
    assert "executor" in inspect.signature(score_tokens).parameters


TINY_EVOLVE = dict(sample_size=8, population=8, generations=2, batch_size=16, max_height=6, init_max_depth=4,
                   strata=4, seed=5)


def _strip(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.mark.slow  # starts a local Ray (GCS, raylet, workers): many minutes on a loaded 2-core machine
def test_evolve_and_search_identical_on_every_executor(local_ray, tmp_path, tss_truth, data_dir, cache, monkeypatch):
    """The same seed and config give the same best tree, hall of fame and history with the serial, process and Ray
    executors (the process one made from the config: executor = "process", workers = 2), and a search scored by the
    evolved proxy evaluates the same architectures to the same front."""
    from greenmachine.config import EvolveConfig
    from greenmachine.search.architecture import SearchConfig, run_search
    from greenmachine.search import proxy_gp
    from greenmachine.search.proxy_gp import run_evolution

    monkeypatch.setattr(proxy_gp, "EVAL_CHUNK", 4)  # two chunks of the 8 networks: two shards with two workers
    base = EvolveConfig(**TINY_EVOLVE)
    runs = {}
    ray_ex = RayExecutor()
    try:
        runs["serial"] = run_evolution(base, tss_truth, data_dir, tmp_path / "serial", cache=cache)
        runs["process"] = run_evolution(base.override(executor="process", workers=2), tss_truth, data_dir,
                                        tmp_path / "process", cache=cache)
        runs["ray"] = run_evolution(base, tss_truth, data_dir, tmp_path / "ray", cache=cache, executor=ray_ex)
    finally:
        ray_ex.close()
    ref = runs["serial"]
    assert ref.evaluations > 0
    for name, r in runs.items():
        assert (r.best_tokens, r.best_fitness) == (ref.best_tokens, ref.best_fitness), name
        assert r.hall_of_fame == ref.hall_of_fame and _strip(r.history) == _strip(ref.history), name
    assert "2 shard(s)" in (tmp_path / "process" / "evolve.log").read_text()

    proxy = tmp_path / "serial" / "proxy.json"
    config = SearchConfig(objective=str(proxy), cost="train-energy", budget=8, population=4, seed=1)
    fronts = []
    for ex in (SerialExecutor(), ProcessExecutor(2), RayExecutor(2)):
        try:
            run_search(config, tss_truth, data_dir, tmp_path / f"search-{ex.kind}", cache=ProbeCache(None),
                       executor=ex)
        finally:
            ex.close()
        fronts.append((tmp_path / f"search-{ex.kind}" / "evaluated.csv").read_text())
    assert fronts[0].count("\n") >= 8 and fronts[1] == fronts[0] and fronts[2] == fronts[0]
