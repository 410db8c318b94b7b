"""Scores averaged over several initialisations (`--inits`): exactly the mean of the single-initialisation runs at
the next probe seeds, for evolved trees and baselines alike, through the library and the command line."""

import csv
import json

import numpy as np
import pytest

from conftest import gm
from greenmachine.cli import INITS
from greenmachine.config import SEED_MAX
from greenmachine.errors import GreenmachineError
from greenmachine.probing.cache import ProbeCache
from greenmachine.probing.probe import MAX_INITS, init_protocols
from greenmachine.proxies.classic import classic_tokens
from greenmachine.proxies.comparison import compare
from greenmachine.proxies.proxyfile import Proxy, save_proxy
from greenmachine.proxies.scoring import score_tokens
from greenmachine.workspace import probe_settings

INDICES = [11, 284, 1, 40]
BATCH = 8


def test_the_command_line_range_is_the_library_range():
    assert (INITS.min, INITS.max) == (1, MAX_INITS)


def test_each_initialisation_moves_both_seeds_and_keys_its_own_images(data_dir):
    base = probe_settings("tss", "cifar10", BATCH, 5, "cpu", init_seed=9, data_dir=data_dir)
    protocols = init_protocols(base, 3, str(data_dir))
    assert protocols[0] == base
    assert [(p.batch_seed, p.init_seed) for p in protocols] == [(5, 9), (6, 10), (7, 11)]
    for r, p in enumerate(protocols):  # the digest is the one probe_settings computes for that seed
        assert p.images_digest == probe_settings("tss", "cifar10", BATCH, 5 + r, "cpu", data_dir=data_dir).images_digest
    assert len({p.images_digest for p in protocols}) == 3
    undigested = probe_settings("tss", "cifar10", BATCH, 5, "cpu")
    assert all(p.images_digest == "" for p in init_protocols(undigested, 2))


@pytest.mark.parametrize("inits", [0, MAX_INITS + 1])
def test_an_inits_count_out_of_range_is_refused(data_dir, inits):
    base = probe_settings("tss", "cifar10", BATCH, 0, "cpu")
    with pytest.raises(GreenmachineError, match=f"--inits must be between 1 and {MAX_INITS}, got {inits}"):
        init_protocols(base, inits)


def test_the_last_initialisation_must_have_a_valid_seed():
    base = probe_settings("tss", "cifar10", BATCH, SEED_MAX - 1, "cpu")
    assert len(init_protocols(base, 2)) == 2
    with pytest.raises(GreenmachineError, match="probe seed of the last initialisation"):
        init_protocols(base, 3)


def test_a_tree_score_is_the_mean_of_the_single_initialisation_scores(tss_truth, data_dir, cache):
    tokens = classic_tokens("meco_relu")
    single = []
    for seed in (3, 4, 5):
        settings = probe_settings("tss", "cifar10", BATCH, seed, "cpu", data_dir=data_dir)
        single.append(score_tokens(tokens, tss_truth, "cifar10", INDICES, settings, data_dir, cache=cache).scores)
    assert not np.allclose(single[0], single[1])  # the initialisations differ, or the test shows nothing
    base = probe_settings("tss", "cifar10", BATCH, 3, "cpu", data_dir=data_dir)
    averaged = score_tokens(tokens, tss_truth, "cifar10", INDICES, base, data_dir, cache=cache, inits=3)
    np.testing.assert_allclose(averaged.scores, np.mean(single, axis=0), rtol=1e-12)
    assert averaged.inits == 3
    # uncached, the same figures: the mean does not come from the cache's bookkeeping
    fresh = score_tokens(tokens, tss_truth, "cifar10", INDICES[:2], base, data_dir, cache=ProbeCache(None), inits=3)
    np.testing.assert_allclose(fresh.scores, averaged.scores[:2], rtol=1e-12)


def test_inits_and_spectrum_images_combine(tss_truth, data_dir, cache):
    """--inits N with --spectrum-images K: every initialisation reads K images' spectra, and the score is the mean of
    the N single runs at K images (how README's "both levers" table was measured, one probe seed per run)."""
    tokens = classic_tokens("meco_relu")
    base = probe_settings("tss", "cifar10", BATCH, 2, "cpu", data_dir=data_dir, spectrum_images=3)
    assert [p.spectrum_images for p in init_protocols(base, 2, str(data_dir))] == [3, 3]
    single = [score_tokens(tokens, tss_truth, "cifar10", INDICES,
                           probe_settings("tss", "cifar10", BATCH, seed, "cpu", data_dir=data_dir, spectrum_images=3),
                           data_dir, cache=cache).scores for seed in (2, 3)]
    averaged = score_tokens(tokens, tss_truth, "cifar10", INDICES, base, data_dir, cache=cache, inits=2)
    np.testing.assert_allclose(averaged.scores, np.mean(single, axis=0), rtol=1e-12)
    # the equality shows that K reached the second initialisation too, as long as K changes that run's scores
    second_one_image = score_tokens(tokens, tss_truth, "cifar10", INDICES, probe_settings(
        "tss", "cifar10", BATCH, 3, "cpu", data_dir=data_dir), data_dir, cache=cache).scores
    assert not np.allclose(second_one_image, single[1])


def test_baselines_and_evolved_columns_are_means_over_initialisations(tss_truth, data_dir, cache, tmp_path):
    evolved = {"evolved_x": Proxy(classic_tokens("meco_relu"), space="tss", dataset="cifar10")}
    names = ["synflow", "naswot", "params"]
    runs = []
    for seed in (0, 1):
        settings = probe_settings("tss", "cifar10", BATCH, seed, "cpu", data_dir=data_dir)
        runs.append(compare(tss_truth, "cifar10", INDICES, settings, data_dir, names, evolved, cache=cache))
    base = probe_settings("tss", "cifar10", BATCH, 0, "cpu", data_dir=data_dir)
    out = tmp_path / "two.csv"
    both = compare(tss_truth, "cifar10", INDICES, base, data_dir, names, evolved, out_csv=out, cache=cache, inits=2)
    assert not np.allclose(runs[0].scores["naswot"], runs[1].scores["naswot"])
    for name in [*names, "evolved_x"]:
        np.testing.assert_allclose(both.scores[name], (runs[0].scores[name] + runs[1].scores[name]) / 2,
                                   rtol=1e-12, err_msg=name)
    np.testing.assert_array_equal(both.scores["params"], runs[0].scores["params"])  # no seed in a parameter count
    rows = list(csv.DictReader(open(out)))
    assert [int(r["index"]) for r in rows] == INDICES
    np.testing.assert_allclose([float(r["naswot"]) for r in rows], both.scores["naswot"], rtol=1e-12)


def test_the_command_line_averages_and_records_its_inits(tmp_path, capsys, env, data_dir, tss_truth, cache):
    proxy = tmp_path / "mine.json"
    save_proxy(Proxy(classic_tokens("meco_relu"), space="tss", dataset="cifar10",
                     probe={"batch_size": BATCH, "batch_seed": 2, "init_seed": 2}), proxy)
    archs = ",".join(map(str, INDICES))
    per_seed = []
    for seed in (2, 3):
        settings = probe_settings("tss", "cifar10", BATCH, seed, "cpu", data_dir=data_dir)
        per_seed.append(score_tokens(classic_tokens("meco_relu"), tss_truth, "cifar10", INDICES, settings,
                                     data_dir, cache=cache).scores)
    code, stdout, _ = gm(capsys, "score", proxy, "--archs", archs, "--inits", 2, "--out", tmp_path / "s.csv",
                         "--quiet")
    assert code == 0 and "kendall_tau=" in stdout
    scores = [float(r["score"]) for r in csv.DictReader(open(tmp_path / "s.csv"))]
    np.testing.assert_allclose(scores, np.mean(per_seed, axis=0), rtol=1e-12)
    assert json.loads((tmp_path / "s.summary.json").read_text())["inits"] == 2

    code, stdout, _ = gm(capsys, "baselines", "--archs", archs, "--proxies", "params", "--include", proxy,
                         "--batch-size", BATCH, "--probe-seed", 2, "--inits", 2, "--out", tmp_path / "b.csv")
    assert code == 0 and "mean of 2 initialisations" in stdout
    rows = list(csv.DictReader(open(tmp_path / "b.csv")))
    np.testing.assert_allclose([float(r["evolved_mine"]) for r in rows], scores, rtol=1e-12)
    assert json.loads((tmp_path / "b.summary.json").read_text())["inits"] == 2

    for bad in ("0", "33", "x"):
        for command in (["score", proxy, "--archs", archs], ["baselines", "--archs", archs]):
            code, _, err = gm(capsys, *command, "--inits", bad)
            assert code == 2 and "--inits" in err and len(err.strip().splitlines()) == 1, (command, bad, err)


def test_included_proxies_share_one_probe_of_each_network(tss_truth, data_dir, cache, monkeypatch):
    """Uncached, three included trees that need different passes (synflow; ce; ce and spectrum) probe each network
    once, with the union of the passes, and score what each scores alone."""
    from greenmachine.probing import cache as cache_module

    evolved = {f"evolved_{n}": Proxy(classic_tokens(n), space="tss", dataset="cifar10")
               for n in ("synflow", "snip", "meco_relu")}
    settings = probe_settings("tss", "cifar10", BATCH, 0, "cpu", data_dir=data_dir)
    alone = {name: score_tokens(p.tokens, tss_truth, "cifar10", INDICES, settings, data_dir, cache=cache).scores
             for name, p in evolved.items()}
    jobs = []
    probe_job = cache_module._probe_job

    def counting(*args):
        jobs.append(args[-1])
        return probe_job(*args)

    monkeypatch.setattr(cache_module, "_probe_job", counting)
    shared = compare(tss_truth, "cifar10", INDICES, settings, data_dir, [], evolved, cache=ProbeCache(None))
    assert sorted((i, g) for i, _, g in jobs) == [(i, ("ce", "synflow", "spectrum")) for i in sorted(INDICES)]
    for name, scores in alone.items():
        np.testing.assert_allclose(shared.scores[name], scores, rtol=1e-12, err_msg=name)
    assert all(s.seconds_per_network > 0 for s in shared.stats)


def test_spectrum_images_from_the_proxy_file_and_the_command_line(tmp_path, capsys, env, data_dir, tss_truth, cache):
    """--spectrum-images K: score defaults to the proxy's own K and records it; baselines scores an included proxy
    with it; out-of-range values and proxy files are one-line errors."""
    proxy = tmp_path / "mine.json"
    save_proxy(Proxy(classic_tokens("meco_relu"), space="tss", dataset="cifar10",
                     probe={"batch_size": BATCH, "batch_seed": 2, "init_seed": 2, "spectrum_images": 3}), proxy)
    archs = ",".join(map(str, INDICES))
    expected = {}
    for k in (1, 3):
        settings = probe_settings("tss", "cifar10", BATCH, 2, "cpu", data_dir=data_dir, spectrum_images=k)
        expected[k] = score_tokens(classic_tokens("meco_relu"), tss_truth, "cifar10", INDICES, settings, data_dir,
                                   cache=cache).scores
    assert not np.allclose(expected[1], expected[3])
    for args, k in (([], 3), (["--spectrum-images", 1], 1)):
        _score_matches(capsys, proxy, archs, args, tmp_path / f"s{k}.csv", expected[k], "spectrum_images", k)
    code, stdout, err = gm(capsys, "baselines", "--archs", archs, "--proxies", "params", "--include", proxy,
                           "--batch-size", BATCH, "--probe-seed", 2, "--spectrum-images", 3, "--out", tmp_path / "b.csv")
    assert code == 0 and "spectra of 3 images" in stdout, err
    np.testing.assert_allclose([float(r["evolved_mine"]) for r in csv.DictReader(open(tmp_path / "b.csv"))],
                               expected[3], rtol=1e-12)
    assert json.loads((tmp_path / "b.summary.json").read_text())["spectrum_images"] == 3

    for bad in ("0", str(BATCH + 1)):
        for command in (["score", proxy, "--archs", archs], ["baselines", "--archs", archs, "--batch-size", BATCH]):
            code, _, err = gm(capsys, *command, "--spectrum-images", bad)
            assert code == 2 and "--spectrum-images must be between 1 and the probe batch size" in err \
                and len(err.strip().splitlines()) == 1, (command, bad, err)
    for bad in (0, 65):  # against the evolution config's batch size (64), before any work
        code, _, err = gm(capsys, "quality", "--spectrum-images", bad, "--out", tmp_path / "q", "--table",
                          tmp_path / "q.md")
        assert code == 2 and "--spectrum-images must be between 1 and the probe batch size 64" in err \
            and len(err.strip().splitlines()) == 1 and not (tmp_path / "q").exists(), err
    _refuses_bad_probe_values(capsys, proxy, archs, "spectrum_images", f"the probe batch size {BATCH}", BATCH + 1)


def _score_matches(capsys, proxy, archs, args, out, expected, field, value):
    """`score PROXY --archs ... ARGS --out OUT` writes the expected scores, and its summary records ``field``."""
    code, _, err = gm(capsys, "score", proxy, "--archs", archs, *args, "--out", out, "--quiet")
    assert code == 0, err
    np.testing.assert_allclose([float(r["score"]) for r in csv.DictReader(open(out))], expected, rtol=1e-12)
    assert json.loads(out.with_name(out.stem + ".summary.json").read_text())[field] == value


def _refuses_bad_probe_values(capsys, proxy, archs, key, upper_name, too_large):
    """`score` of a proxy file whose ``probe[key]`` is out of range or not an integer: one line, exit 2."""
    data = json.loads(proxy.read_text())
    for bad in (0, too_large, "3", True):
        data["probe"][key] = bad
        proxy.write_text(json.dumps(data))
        code, _, err = gm(capsys, "score", proxy, "--archs", archs)
        expected = ("must be an integer, got" if not isinstance(bad, int) or isinstance(bad, bool)
                    else f"must be between 1 and {upper_name}, got {bad}")
        assert code == 2 and f"probe.{key} {expected}" in err and len(err.strip().splitlines()) == 1, err


def test_score_defaults_to_the_proxy_files_inits(tmp_path, capsys, env, data_dir, tss_truth, cache):
    """A proxy evolved with ``inits = N`` records N (probe.inits); `score` averages over N initialisations unless
    given --inits, and records what it used; a bad recorded N is a one-line error."""
    proxy = tmp_path / "mine.json"
    save_proxy(Proxy(classic_tokens("meco_relu"), space="tss", dataset="cifar10",
                     probe={"batch_size": BATCH, "batch_seed": 2, "init_seed": 2, "inits": 2}), proxy)
    archs = ",".join(map(str, INDICES))
    settings = probe_settings("tss", "cifar10", BATCH, 2, "cpu", data_dir=data_dir)
    expected = {n: score_tokens(classic_tokens("meco_relu"), tss_truth, "cifar10", INDICES, settings, data_dir,
                                cache=cache, inits=n).scores for n in (1, 2)}
    assert not np.allclose(expected[1], expected[2])
    for args, n in (([], 2), (["--inits", 1], 1)):
        _score_matches(capsys, proxy, archs, args, tmp_path / f"s{n}.csv", expected[n], "inits", n)
    _refuses_bad_probe_values(capsys, proxy, archs, "inits", str(MAX_INITS), MAX_INITS + 1)
    for bad in ("0", "x"):
        code, _, err = gm(capsys, "evolve", "--inits", bad, "--out", tmp_path / "e")
        assert code == 2 and "--inits" in err and len(err.strip().splitlines()) == 1 \
            and not (tmp_path / "e").exists(), err


def test_evolve_inits_from_the_command_line(tmp_path, capsys, env):
    """`evolve --inits 2 --spectrum-images 2` reaches the run: the summary names it, proxy.json records both, and
    `score` of that proxy on its own sample gives back its fitness."""
    out = tmp_path / "run"
    code, stdout, err = gm(capsys, "evolve", "--sample-size", 6, "--population", 4, "--generations", 0,
                           "--batch-size", BATCH, "--seed", 3, "--inits", 2, "--spectrum-images", 2, "--out", out)
    assert code == 0, err
    assert "each probed under 2 initialisations" in stdout
    data = json.loads((out / "proxy.json").read_text())
    assert data["probe"]["inits"] == 2 and data["probe"]["spectrum_images"] == 2
    archs = ",".join(map(str, data["sample_indices"]))
    code, stdout, err = gm(capsys, "score", out / "proxy.json", "--archs", archs, "--quiet")
    assert code == 0 and f"kendall_tau={data['fitness']['kendall_tau']:.4f}" in stdout, (stdout, err)


def test_evolve_stops_before_probes_that_would_not_fit(tmp_path, capsys, env, monkeypatch):
    """After the first initialisation's probes, an evolution that would need more memory than the machine has for
    the others stops with one line (exit 2) that names the measured size; GREENMACHINE_MEMORY_CHECK=0 goes on."""
    from greenmachine.probing import memory

    args = ("evolve", "--sample-size", 6, "--population", 4, "--generations", 0, "--batch-size", BATCH, "--seed", 3,
            "--inits", 3)
    held = []
    monkeypatch.setattr(memory, "available_bytes", lambda: held[0] * 2 + memory.WORKING_MARGIN_BYTES)
    real = memory.check_room_for

    def measuring(more, what, remedy):
        held.append(more // 2)  # two more initialisations at the first one's size
        return real(more, what, remedy)

    monkeypatch.setattr("greenmachine.search.proxy_gp.check_room_for", measuring)
    code, _, err = gm(capsys, *args, "--out", tmp_path / "fits")  # exactly enough: runs
    assert code == 0, err
    held.clear()
    monkeypatch.setattr(memory, "available_bytes", lambda: held[0] * 2 + memory.WORKING_MARGIN_BYTES - 1)
    code, _, err = gm(capsys, *args, "--out", tmp_path / "short")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "evolve: 2 more probings of the sample" in lines[0] and "GREENMACHINE_MEMORY_CHECK=0" in lines[0]
    assert not (tmp_path / "short" / "proxy.json").exists()
    monkeypatch.setenv("GREENMACHINE_MEMORY_CHECK", "0")
    held.clear()
    code, _, err = gm(capsys, *args, "--out", tmp_path / "forced")
    assert code == 0 and (tmp_path / "forced" / "proxy.json").exists(), err


def test_the_memory_check_reads_what_the_kernel_says_is_available():
    from greenmachine.probing import memory

    free = memory.available_bytes()
    assert free is None or 0 < free < 2**50


def test_search_scores_a_proxy_under_its_own_protocol(tss_truth, data_dir, cache, tmp_path):
    """`search --objective proxy.json` probes as `score` does: the file's spectrum images and initialisations, not
    one initialisation and the first image's spectra."""
    from greenmachine.search.architecture import ProxyObjective
    from greenmachine.ui import Reporter

    tokens = classic_tokens("meco_relu")
    path = tmp_path / "proxy.json"
    save_proxy(Proxy(tokens, space="tss", dataset="cifar10",
                     probe={"batch_size": BATCH, "batch_seed": 2, "init_seed": 2, "spectrum_images": 3, "inits": 2}),
               path)
    objective = ProxyObjective(str(path), tss_truth, "cifar10", data_dir, "cpu", cache, None, Reporter(quiet=True))
    expected = score_tokens(tokens, tss_truth, "cifar10", INDICES, probe_settings(
        "tss", "cifar10", BATCH, 2, "cpu", data_dir=data_dir, spectrum_images=3), data_dir, cache=cache, inits=2)
    np.testing.assert_allclose(objective.scores(INDICES), expected.scores, rtol=1e-12)
    plain = score_tokens(tokens, tss_truth, "cifar10", INDICES, probe_settings(
        "tss", "cifar10", BATCH, 2, "cpu", data_dir=data_dir), data_dir, cache=cache)
    assert not np.allclose(plain.scores, expected.scores)  # the protocol matters, or the test shows nothing


def test_reproduce_scores_the_held_out_sample_as_the_proxy_was_evolved(tmp_path, capsys, env, tss_truth, data_dir,
                                                                      cache):
    """A reproduction config with `inits` and `spectrum_images` holds its proxy out under them too (its summary
    records both), not under one initialisation and the first image's spectra."""
    config = tmp_path / "c.toml"
    config.write_text('space = "tss"\ndataset = "cifar10"\nsample_size = 6\npopulation = 4\ngenerations = 0\n'
                      f'batch_size = {BATCH}\nstrata = 3\ninits = 2\nspectrum_images = 2\neval_sample_size = 4\n'
                      'eval_sampling = "random"\neval_baselines = false\n')
    run = tmp_path / "run"
    code, _, err = gm(capsys, "reproduce", "--config", config, "--out", run, "--quiet")
    assert code == 0, err
    summary = json.loads((run / "scores.summary.json").read_text())
    assert summary["inits"] == 2 and summary["spectrum_images"] == 2
    rows = list(csv.DictReader(open(run / "scores.csv")))
    proxy = json.loads((run / "proxy.json").read_text())
    seed = proxy["probe"]["batch_seed"]
    expected = score_tokens(proxy["tokens"], tss_truth, "cifar10", [int(r["index"]) for r in rows], probe_settings(
        "tss", "cifar10", BATCH, seed, "cpu", data_dir=data_dir, spectrum_images=2), data_dir, cache=cache, inits=2)
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected.scores, rtol=1e-9)


def test_score_probe_seed_scores_the_tree_under_another_draw(tmp_path, capsys, env, data_dir, tss_truth, cache):
    """`score --probe-seed S` probes as `baselines --probe-seed S` does (minibatch and initialisation from S), not
    with the proxy file's own seeds, and its summary says which draw it scored."""
    proxy = tmp_path / "mine.json"
    save_proxy(Proxy(classic_tokens("meco_relu"), space="tss", dataset="cifar10",
                     probe={"batch_size": BATCH, "batch_seed": 0, "init_seed": 7}), proxy)
    archs = ",".join(map(str, INDICES))
    settings = probe_settings("tss", "cifar10", BATCH, 4, "cpu", data_dir=data_dir)
    expected = score_tokens(classic_tokens("meco_relu"), tss_truth, "cifar10", INDICES, settings, data_dir,
                            cache=cache).scores
    own = probe_settings("tss", "cifar10", BATCH, 0, "cpu", init_seed=7, data_dir=data_dir)
    assert not np.allclose(expected, score_tokens(classic_tokens("meco_relu"), tss_truth, "cifar10", INDICES, own,
                                                  data_dir, cache=cache).scores)
    code, stdout, _ = gm(capsys, "score", proxy, "--archs", archs, "--probe-seed", 4, "--out", tmp_path / "s.csv",
                         "--quiet")
    assert code == 0 and "kendall_tau=" in stdout
    scores = [float(r["score"]) for r in csv.DictReader(open(tmp_path / "s.csv"))]
    np.testing.assert_allclose(scores, expected, rtol=1e-12)
    summary = json.loads((tmp_path / "s.summary.json").read_text())
    assert (summary["probe_seed"], summary["init_seed"]) == (4, 4)

    code, _, _ = gm(capsys, "baselines", "--archs", archs, "--proxies", "params", "--include", proxy,
                    "--batch-size", BATCH, "--probe-seed", 4, "--out", tmp_path / "b.csv")
    assert code == 0
    rows = list(csv.DictReader(open(tmp_path / "b.csv")))
    np.testing.assert_allclose([float(r["evolved_mine"]) for r in rows], scores, rtol=1e-12)
    code, _, err = gm(capsys, "score", proxy, "--archs", archs, "--probe-seed", -1)
    assert code == 2 and "--probe-seed" in err and len(err.strip().splitlines()) == 1
