"""The GP language: the classic proxies as trees equal their direct implementations on real networks and
images; trees load safely; random trees never crash."""

import builtins
import random

import numpy as np
import pytest
import torch
from deap import gp

from greenmachine.proxies.baselines import ProxyInputs, get_proxy
from greenmachine.probing.cache import probe_sample
from greenmachine.proxies.classic import classic_names, classic_tokens
from greenmachine.probing.datasets import probe_batch
from greenmachine.errors import GreenmachineError
from greenmachine.proxies.fitness import WORST_FITNESS, kendall_fitness
from greenmachine.proxies.primitives import (
    check_tokens,
    evaluate,
    parse_expression,
    primitive_set,
    tree_expression,
    tree_from_tokens,
    tree_tokens,
)
from greenmachine.probing.probe import GROUPS, ProbeSettings, init_network
from greenmachine.probing.terminals import ProbeBatch

INDICES = (11, 284, 1, 7)  # official records 11 and 284, and two more


@pytest.fixture(scope="module")
def sample(tss_truth, data_dir, cache):
    settings = ProbeSettings("tss", "cifar10", batch_size=32, batch_seed=0, init_seed=0)
    items = [(i, tss_truth.arch(i)) for i in INDICES]
    probes = probe_sample(items, settings, data_dir, groups=tuple(GROUPS), cache=cache)  # the jacobian pass too
    images, labels = probe_batch(str(data_dir), "cifar10", 32, 0)
    direct_inputs = [
        ProxyInputs(init_network("tss", a, "cifar10", 0, i), images, labels, 10, seed=0) for i, a in items
    ]
    return ProbeBatch(probes), direct_inputs


@pytest.mark.parametrize("name,rel", [("synflow", 1e-9), ("snip", 1e-4), ("grad_norm", 1e-4), ("naswot", 1e-9),
                                      ("jacov", 1e-6), ("ntk_cond", 1e-6), ("swap", 0.0)])
def test_classic_trees_equal_direct_implementations(sample, name, rel):
    batch, direct_inputs = sample
    tree_scores = evaluate(classic_tokens(name), batch).numpy()
    direct = np.array([get_proxy(name)(inp) for inp in direct_inputs])
    assert np.all(np.isfinite(direct))  # jacov reports NaN for a constant Jacobian row: none of these networks has one
    # (the probe's ntk pass accumulates in float32 per weight, the direct one in float64 after: rel 1e-6 of a log)
    np.testing.assert_allclose(tree_scores, direct, rtol=rel)
    assert np.ptp(direct) > 0  # the networks differ, so equality is not by accident


def test_network_kernels_are_opt_in_and_mix_with_the_relu_kernels(sample):
    """Without ``jacobian`` the language and the seeds are what they were; with it, k_sum turns the ReLU kernels
    into a network kernel: n_logdet(k_sum(x)) is k_logdet_sum(x), and sums with jacob_corr evaluate."""
    batch, _ = sample
    names = lambda pset: {p.name for ps in pset.primitives.values() for p in ps} | {
        t.name for ts in pset.terminals.values() for t in ts}
    assert not {"jacob_corr", "k_sum", "n_jacov"} & names(primitive_set())
    assert {"jacob_corr", "k_sum", "n_add", "n_mul", "n_logdet", "n_jacov"} <= names(primitive_set(jacobian=True))
    assert "jacov" not in classic_names() and "jacov" in classic_names(jacobian=True)
    np.testing.assert_allclose(evaluate(parse_expression("n_logdet(k_sum(relu_kernel))"), batch).numpy(),
                               evaluate(classic_tokens("naswot"), batch).numpy(), rtol=1e-12)
    mixed = evaluate(parse_expression("n_logdet(n_add(k_sum(act_cosine), jacob_corr))"), batch).numpy()
    assert np.all(np.isfinite(mixed)) and np.ptp(mixed) > 0


def test_the_ntk_is_opt_in_and_combines_with_the_other_kernels_over_the_images_they_share(sample):
    """``ntk`` alone brings the ntk terminal and the kernel operators, not jacob_corr; the ntk spans the first 16
    images and the other kernels all 32, so n_add/n_mul cut them to the first 16; n_corr gives unit diagonals."""
    batch, _ = sample
    names = lambda pset: {p.name for ps in pset.primitives.values() for p in ps} | {
        t.name for ts in pset.terminals.values() for t in ts}
    assert not {"ntk", "n_cond", "n_trace", "n_corr"} & names(primitive_set())
    assert "ntk" not in names(primitive_set(jacobian=True))
    with_ntk = names(primitive_set(ntk=True))
    assert {"ntk", "k_sum", "n_cond", "n_trace", "n_corr", "n_logdet"} <= with_ntk and "jacob_corr" not in with_ntk
    assert "ntk_cond" in classic_names(ntk=True) and "ntk_cond" not in classic_names(jacobian=True)
    assert batch.net_kernels["ntk"].shape[1:] == (16, 16) and batch.net_kernels["jacob_corr"].shape[1:] == (32, 32)
    ntk = batch.net_kernels["ntk"]
    corr = evaluate(parse_expression("n_trace(n_corr(ntk))"), batch).numpy()
    np.testing.assert_allclose(corr, 16.0, rtol=1e-12)
    both = evaluate(parse_expression("n_trace(n_add(jacob_corr, n_corr(ntk)))"), batch).numpy()
    np.testing.assert_allclose(both, 32.0, rtol=1e-12)  # 16 ones of jacob_corr's diagonal + 16 of the cosines
    trace = evaluate(parse_expression("n_trace(ntk)"), batch).numpy()
    np.testing.assert_allclose(trace, torch.diagonal(ntk, dim1=1, dim2=2).sum(1).numpy(), rtol=1e-12)
    assert np.all(np.isfinite(evaluate(parse_expression("n_cond(n_mul(ntk, k_sum(relu_kernel)))"), batch).numpy()))


def test_swap_is_opt_in_and_is_one_number_per_network(sample):
    """Without ``swap`` the language and the seeds are what they were; with it, ``swap`` is a network score that
    combines with the others (MeCo's sum times SWAP, the product the README's first SWAP check ranks)."""
    batch, _ = sample
    names = lambda pset: {t.name for ts in pset.terminals.values() for t in ts}  # noqa: E731
    assert "swap" not in names(primitive_set(structural=True, jacobian=True, ntk=True))
    assert "swap" in names(primitive_set(swap=True))
    assert "swap" not in classic_names(jacobian=True, ntk=True) and "swap" in classic_names(swap=True)
    counts = evaluate(parse_expression("swap"), batch).numpy()
    assert counts.shape == (len(INDICES),) and np.all(counts > 0) and np.all(counts == np.round(counts))
    product = evaluate(parse_expression("mul(a_sum_layers(e_min(corr_eig)), swap)"), batch).numpy()
    np.testing.assert_allclose(product, counts * evaluate(classic_tokens("meco_relu"), batch).numpy(), rtol=1e-12)


def test_expression_round_trip():
    for name in ("synflow", "snip", "grad_norm", "naswot", "conv_params"):
        tokens = classic_tokens(name)
        assert parse_expression(tree_expression(tokens)) == tokens
        assert tree_tokens(tree_from_tokens(tokens)) == tokens


@pytest.mark.parametrize(
    "text,match",
    [
        ("__import__('os').system('echo hi')", "unknown primitive"),
        ("add(c_one)", "wrong number"),
        ("w_sum_layers(weight)", "returns WTensor"),
        ("add(c_one, c_two) c_one", "unexpected"),
        ("eval", "unknown primitive"),
        ("", "incomplete"),
    ],
)
def test_malicious_or_malformed_expressions_are_rejected(text, match):
    with pytest.raises(GreenmachineError, match=match):
        parse_expression(text)


def test_token_lists_are_checked():
    with pytest.raises(GreenmachineError, match="extra tokens"):
        check_tokens(["c_one", "c_two"])
    with pytest.raises(GreenmachineError, match="ends early"):
        check_tokens(["add", "c_one"])
    with pytest.raises(GreenmachineError, match="returns"):
        check_tokens(["weight"])  # a tensor, not a network score


def test_evaluation_never_evals(sample, monkeypatch):
    batch, _ = sample

    def forbidden(*args, **kwargs):
        raise AssertionError("eval/compile called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(gp, "compile", forbidden)
    tokens = parse_expression("add(log(w_sum_layers(w_sum(w_abs(w_mul(weight, synflow_grad))))), k_logdet_sum(relu_kernel))")
    assert evaluate(tokens, batch).shape == (len(INDICES),)


@pytest.mark.parametrize("jacobian,ntk", [(False, False), (True, False), (True, True)])
def test_random_trees_never_crash_and_bad_ones_get_worst_fitness(sample, jacobian, ntk):
    batch, _ = sample
    random.seed(0)
    pset = primitive_set(structural=True, jacobian=jacobian, ntk=ntk)
    acc = np.arange(len(INDICES), dtype=float)
    fits = []
    for _ in range(150):
        tree = gp.PrimitiveTree(gp.genHalfAndHalf(pset, 1, 5))
        scores = evaluate(tree_tokens(tree), batch).numpy()
        fit = kendall_fitness(scores, acc)
        assert -1.0 <= fit <= 1.0
        if not np.all(np.isfinite(scores)) or np.ptp(scores) == 0:
            assert fit == WORST_FITNESS
        fits.append(fit)
    assert len(set(fits)) > 3


def test_fitness_rules():
    acc = np.array([1.0, 2.0, 3.0])
    assert kendall_fitness(np.array([1.0, 2.0, 3.0]), acc) == pytest.approx(1.0)
    assert kendall_fitness(np.array([1.0, np.nan, 3.0]), acc) == WORST_FITNESS
    assert kendall_fitness(np.array([1.0, np.inf, 3.0]), acc) == WORST_FITNESS
    assert kendall_fitness(np.array([2.0, 2.0, 2.0]), acc) == WORST_FITNESS


def test_structural_terminals_equal_direct_layer_positions(sample):
    """wl_depth is k/L over a network's Conv2d/Linear layers in module order, al_depth k/L over its ReLU calls in
    forward order: checked against the networks themselves."""
    import torch
    from torch import nn

    batch, direct_inputs = sample
    depth_params = evaluate(parse_expression("w_mean_layers(wl_mul(wl_log(w_count(weight)), wl_depth))"), batch)
    relu_depth = evaluate(parse_expression("a_sum_layers(al_depth)"), batch)
    for k, inp in enumerate(direct_inputs):
        layers = [m for m in inp.network.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        n = len(layers)
        direct = np.mean([np.log(m.weight.numel()) * (j + 1) / n for j, m in enumerate(layers)])
        assert depth_params[k].item() == pytest.approx(direct, rel=1e-6)  # float32 counts
        calls = []
        handles = [m.register_forward_pre_hook(lambda *a: calls.append(1)) for m in inp.network.modules()
                   if isinstance(m, nn.ReLU)]
        with torch.no_grad():
            inp.network(inp.images)
        for h in handles:
            h.remove()
        assert relu_depth[k].item() == pytest.approx(sum((j + 1) / len(calls) for j in range(len(calls))))
    assert np.ptp(depth_params.numpy()) > 0


def test_structural_terminals_are_opt_in_for_evolution_but_always_loadable():
    from greenmachine.proxies.primitives import STRUCTURAL

    plain, full = primitive_set(), primitive_set(structural=True)
    names = lambda pset: {t.name for ts in pset.terminals.values() for t in ts}  # noqa: E731
    assert not set(STRUCTURAL) & names(plain) and set(STRUCTURAL) <= names(full)
    random.seed(1)
    drawn = {t for _ in range(300) for t in tree_tokens(gp.PrimitiveTree(gp.genHalfAndHalf(plain, 1, 5)))}
    assert not set(STRUCTURAL) & drawn
    tokens = parse_expression("w_mean_layers(wl_mul(wl_log(w_count(weight)), wl_depth))")
    assert tree_tokens(tree_from_tokens(tokens)) == tokens  # a proxy file may use them whatever its run's config


def test_relu_layer_constants_probe_the_relu_structure():
    """al_one / al_depth read the ReLUs' layer structure, which only the ce pass records: a tree of them and
    synflow terms needs the ce pass too (it once scored NaN)."""
    from greenmachine.proxies.scoring import probe_passes

    tokens = parse_expression("add(w_sum_layers(w_sum(synflow_grad)), a_sum_layers(al_depth))")
    assert set(probe_passes(tokens)) == {"ce", "synflow"}
    assert probe_passes(parse_expression("w_sum_layers(w_sum(synflow_grad))")) == ("synflow",)
