"""Genetic programming: reproducible from a seed, resumable from its checkpoint, bloat-limited."""

import json

import pytest

from greenmachine.config import EvolveConfig
from greenmachine.errors import GreenmachineError
from greenmachine.search.proxy_gp import run_evolution
from greenmachine.proxies.proxyfile import load_proxy

TINY = EvolveConfig(sample_size=12, population=10, generations=3, batch_size=16, max_height=6, init_max_depth=4,
                    strata=4, seed=7)


def run(tmp_path, name, data_dir, truth, cache, config=TINY, resume=False):
    return run_evolution(config, truth, data_dir, tmp_path / name, cache=cache, resume=resume)


def test_same_seed_same_best_tree_and_history(tmp_path, data_dir, tss_truth, cache):
    a = run(tmp_path, "a", data_dir, tss_truth, cache)
    b = run(tmp_path, "b", data_dir, tss_truth, cache)
    assert a.best_tokens == b.best_tokens and a.best_fitness == b.best_fitness
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(a.history) == strip(b.history)
    assert [r["generation"] for r in a.history] == [0, 1, 2, 3]
    assert all(r["height_max"] <= TINY.max_height for r in a.history)
    # results on disk: proxy.json reloads to the same tree; the history is complete
    proxy = load_proxy(tmp_path / "a" / "proxy.json")
    assert proxy.tokens == a.best_tokens and proxy.fitness == a.best_fitness
    assert proxy.sample_indices == a.sample_indices and proxy.seed == 7 and proxy.config["population"] == 10
    data = json.loads((tmp_path / "a" / "proxy.json").read_text())
    assert {"torch", "deap", "nats_bench", "xautodl"} <= set(data["versions"])
    assert (tmp_path / "a" / "history.csv").read_text().count("\n") == 5
    assert "generation 3" in (tmp_path / "a" / "evolve.log").read_text()


def test_other_seed_other_sample(tmp_path, data_dir, tss_truth, cache):
    a = run(tmp_path, "a", data_dir, tss_truth, cache, TINY.override(seed=8, generations=0))
    b = run(tmp_path, "b", data_dir, tss_truth, cache, TINY.override(generations=0))
    assert a.sample_indices != b.sample_indices


def test_resume_continues_exactly(tmp_path, data_dir, tss_truth, cache):
    straight = run(tmp_path, "straight", data_dir, tss_truth, cache)
    run(tmp_path, "stopped", data_dir, tss_truth, cache, TINY.override(generations=1))
    resumed = run(tmp_path, "stopped", data_dir, tss_truth, cache, resume=True)
    assert resumed.best_tokens == straight.best_tokens
    assert [r["best"] for r in resumed.history] == [r["best"] for r in straight.history]
    assert [r["mean"] for r in resumed.history] == [r["mean"] for r in straight.history]


def test_fingerprint_differences_name_the_setting():
    from greenmachine.search.engine import fingerprint_differences

    old = {"config": {"device": "cuda", "population": 200}, "sample_indices": [1, 2]}
    assert fingerprint_differences(old, {"config": {"device": "cpu", "population": 200}, "sample_indices": [1, 2]}) \
        == "device 'cuda' there, 'cpu' here"
    assert fingerprint_differences(old, {"config": old["config"], "sample_indices": [1, 3]}) == "another sample indices"
    many = {"config": {k: 1 for k in "abcde"}, "sample_indices": []}
    assert fingerprint_differences({"config": {}, "sample_indices": []}, many).endswith("; 2 more")
    assert fingerprint_differences(None, many) == "no readable fingerprint"
    forged = fingerprint_differences({"config": {"population": "x" * 10_000, "a\nb": 1}}, {"config": {"population": 8}})
    assert len(forged) < 120 and "\n" not in forged


def test_resume_and_overwrite_guards(tmp_path, data_dir, tss_truth, cache):
    run(tmp_path, "r", data_dir, tss_truth, cache, TINY.override(generations=0))
    with pytest.raises(GreenmachineError, match="already holds a run"):
        run(tmp_path, "r", data_dir, tss_truth, cache, TINY.override(generations=0))
    # the refusal names the setting that differs, so the user knows what to change back
    with pytest.raises(GreenmachineError, match=r"other settings or another sample \(population 10 there, 12 here\)"):
        run(tmp_path, "r", data_dir, tss_truth, cache, TINY.override(population=12), resume=True)
    with pytest.raises(GreenmachineError, match="no checkpoint"):
        run(tmp_path, "none", data_dir, tss_truth, cache, resume=True)
    check = tmp_path / "r" / "checkpoint.json"
    data = json.loads(check.read_text())
    data["state"]["population"] = [["nonsense_token"], 0.1]
    check.write_text(json.dumps(data))
    with pytest.raises(GreenmachineError, match="damaged"):
        run(tmp_path, "r", data_dir, tss_truth, cache, TINY.override(generations=0), resume=True)
    data["state"]["population"] = [[["__import__"], 0.1]] * TINY.population
    check.write_text(json.dumps(data))
    with pytest.raises(GreenmachineError, match="unknown primitive"):
        run(tmp_path, "r", data_dir, tss_truth, cache, TINY.override(generations=0), resume=True)


def test_classic_seeds_are_in_generation_zero(tmp_path, data_dir, tss_truth, cache):
    res = run(tmp_path, "s", data_dir, tss_truth, cache, TINY.override(generations=0, population=6, seed_classics=True))
    check = json.loads((tmp_path / "s" / "checkpoint.json").read_text())
    first = [" ".join(t) for t, _ in check["state"]["population"]]
    assert "k_logdet_sum relu_kernel" in first
    assert res.best_fitness >= max(f for _, f in check["state"]["population"]) - TINY.parsimony_tolerance


@pytest.mark.parametrize("option,classic", [("jacobian", "n_jacov jacob_corr"), ("ntk", "neg n_cond ntk"),
                                            ("swap", "swap")])
def test_a_kernel_language_probes_its_pass_and_seeds_its_classic(tmp_path, data_dir, tss_truth, cache, option, classic):
    """``jacobian = true`` probes the jacobian pass and seeds jacov among the classics, ``ntk = true`` the ntk pass
    and TE-NAS's ntk_cond; without the option, neither (and a checkpoint written before the option existed has
    the same fingerprint: no key for it)."""
    config = TINY.override(generations=0, population=12, seed_classics=True, **{option: True})
    run(tmp_path, "j", data_dir, tss_truth, cache, config)
    check = json.loads((tmp_path / "j" / "checkpoint.json").read_text())
    assert classic in [" ".join(t) for t, _ in check["state"]["population"]]
    assert check["fingerprint"]["config"][option] is True
    run(tmp_path, "n", data_dir, tss_truth, cache, config.override(**{option: False}))
    check = json.loads((tmp_path / "n" / "checkpoint.json").read_text())
    assert classic not in [" ".join(t) for t, _ in check["state"]["population"]]
    assert option not in check["fingerprint"]["config"]


@pytest.mark.slow  # minutes on a loaded 2-core machine: `make test-slow`
def test_same_seed_same_tree_across_processes(tmp_path, env):
    """Two separate processes (other memory layouts, other class hashes) evolve the same tree from one seed."""
    import subprocess
    import sys

    results = []
    for name in ("p1", "p2"):
        out = tmp_path / name
        args = [sys.executable, "-m", "greenmachine", "evolve", "--sample-size", "12", "--population", "16",
                "--generations", "4", "--batch-size", "16", "--seed", "3", "--out", str(out), "--quiet"]
        res = subprocess.run(args, capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr
        results.append((out / "history.csv").read_text().splitlines())
    strip = lambda lines: [",".join(l.split(",")[:9]) for l in lines]  # noqa: E731 (drop seconds and expression)
    assert strip(results[0]) == strip(results[1])


def test_spectrum_images_reach_the_probe_and_the_proxy_file(tmp_path, data_dir, tss_truth, cache):
    """``spectrum_images = K`` probes the evolution sample with K images' spectra, records K in proxy.json (which
    `score` then uses) and in the fingerprint; K = 1 writes neither key, as runs did before the option existed;
    out of range, the config is refused."""
    for k in (1, 2):
        run(tmp_path, f"k{k}", data_dir, tss_truth, cache, TINY.override(generations=0, spectrum_images=k))
        proxy = json.loads((tmp_path / f"k{k}" / "proxy.json").read_text())
        check = json.loads((tmp_path / f"k{k}" / "checkpoint.json").read_text())
        if k == 1:
            assert "spectrum_images" not in proxy["probe"] and "spectrum_images" not in proxy["config"]
            assert "spectrum_images" not in check["fingerprint"]["config"]
        else:
            assert proxy["probe"]["spectrum_images"] == 2 == check["fingerprint"]["config"]["spectrum_images"]
    for bad in (0, TINY.batch_size + 1):
        with pytest.raises(GreenmachineError, match="spectrum_images must be between 1 and the probe batch size"):
            TINY.override(spectrum_images=bad).validate()


def test_inits_average_the_fitness_and_reach_the_proxy_file(tmp_path, data_dir, tss_truth, cache):
    """``inits = N`` probes the evolution sample under N initialisations: a tree's fitness is the Kendall tau of its
    mean score over them, the figure `score --inits N` gives it on the sample; proxy.json and the fingerprint
    record N (N = 1 writes neither, as runs did before the option existed), and a resume with another N is
    refused."""
    from greenmachine.proxies.fitness import kendall_fitness
    from greenmachine.proxies.scoring import score_tokens
    from greenmachine.workspace import probe_settings

    one = run(tmp_path, "one", data_dir, tss_truth, cache, TINY.override(generations=1))
    two = run(tmp_path, "two", data_dir, tss_truth, cache, TINY.override(generations=1, inits=2))
    assert one.sample_indices == two.sample_indices
    proxy = json.loads((tmp_path / "two" / "proxy.json").read_text())
    check = json.loads((tmp_path / "two" / "checkpoint.json").read_text())
    assert proxy["probe"]["inits"] == 2 == check["fingerprint"]["config"]["inits"]
    assert "inits" not in json.loads((tmp_path / "one" / "proxy.json").read_text())["probe"]
    assert "inits" not in json.loads((tmp_path / "one" / "checkpoint.json").read_text())["fingerprint"]["config"]
    settings = probe_settings("tss", "cifar10", TINY.batch_size, TINY.seed, "cpu")
    for tokens, fitness in two.hall_of_fame[:3]:
        averaged = score_tokens(tokens, tss_truth, "cifar10", two.sample_indices, settings, data_dir, cache=cache,
                                inits=2)
        assert fitness == pytest.approx(kendall_fitness(averaged.scores, averaged.accuracy), abs=1e-9)
    # the averaged fitness is not the one-initialisation fitness: some tree of the hall of fame ranks otherwise
    accuracy = tss_truth.acc("cifar10", two.sample_indices)
    singles = [kendall_fitness(score_tokens(t, tss_truth, "cifar10", two.sample_indices, settings, data_dir,
                                            cache=cache).scores, accuracy) for t, _ in two.hall_of_fame]
    assert any(abs(s - f) > 1e-6 for s, (_, f) in zip(singles, two.hall_of_fame))
    with pytest.raises(GreenmachineError, match="inits 2 there, 3 here"):
        run(tmp_path, "two", data_dir, tss_truth, cache, TINY.override(generations=2, inits=3), resume=True)
    for bad in (0, 33):
        with pytest.raises(GreenmachineError, match=f"inits must be between 1 and 32, got {bad}"):
            TINY.override(inits=bad).validate()
