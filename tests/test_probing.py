"""Probing and the disk cache: what one pass captures, and that a second run does not probe again."""

import pytest
import torch

from greenmachine.probing import cache as cache_module
from greenmachine.probing.cache import ProbeCache, probe_sample
from greenmachine.probing.probe import GROUPS, ProbeSettings, init_network, probe_network, weighted_layers
from greenmachine.probing.datasets import probe_batch

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|"  # official index 11


def test_one_pass_captures_every_terminal(data_dir):
    settings = ProbeSettings("tss", "cifar10", batch_size=16)
    x, y = probe_batch(str(data_dir), "cifar10", 16, 0)
    probe = probe_network(11, ARCH, settings, x, y)
    net = init_network("tss", ARCH, "cifar10", 0, 11)
    n_layers = len(weighted_layers(net))
    n_relus = sum(isinstance(m, torch.nn.ReLU) for m in net.modules())
    for name in ("weight", "grad", "synflow_grad"):
        assert len(probe.tensors[name]) == n_layers
    for name in ("act", "act_grad", "relu_kernel", "act_cosine", "corr_eig"):
        assert len(probe.tensors[name]) == n_relus
    assert probe.tensors["relu_kernel"][0].shape == (16, 16)
    assert probe.tensors["synflow_grad"][0].dtype == torch.float64
    # the probe's weights are the seeded initialisation
    assert torch.equal(probe.tensors["weight"][0], weighted_layers(net)[0].weight.detach().flatten())
    # the ReLU kernel's diagonal is the number of units of that ReLU
    assert float(probe.tensors["relu_kernel"][0][0, 0]) == probe.tensors["act"][0].shape[1] * 32 * 32
    # correlation eigenvalues: C of them, ascending, summing to the trace C (a correlation matrix, dead
    # channels counted as 0)
    eig = probe.tensors["corr_eig"][0]
    assert eig.shape == (probe.tensors["act"][0].shape[1],) and torch.all(eig[1:] >= eig[:-1])
    assert float(eig.sum()) <= eig.numel() + 1e-6


def _opt_in_kernel(data_dir, group: str, batch_size: int):
    """The one kernel of an opt-in pass, which the default passes leave out, and the minibatch it was made on."""
    (name,) = GROUPS[group]
    settings = ProbeSettings("tss", "cifar10", batch_size=batch_size)
    x, y = probe_batch(str(data_dir), "cifar10", batch_size, 0)
    assert name not in probe_network(11, ARCH, settings, x, y).tensors
    probe = probe_network(11, ARCH, settings, x, y, groups=(group,))
    assert set(probe.tensors) == {name} and set(probe.pass_seconds) == {group}
    (kernel,) = probe.tensors[name]
    return kernel, x


def test_jacobian_pass_is_opt_in_and_is_jacovs_correlation(data_dir):
    """The jacobian pass runs only when asked; its kernel is the correlation matrix of d(sum logits)/dx per image,
    computed here directly on the same seeded network."""
    kernel, x = _opt_in_kernel(data_dir, "jacobian", 16)
    net = init_network("tss", ARCH, "cifar10", 0, 11).train()
    images = x.clone().requires_grad_(True)
    net(images).sum().backward()
    direct = torch.corrcoef(images.grad.reshape(16, -1).double())
    assert kernel.shape == (16, 16) and kernel.dtype == torch.float64
    torch.testing.assert_close(kernel, direct)
    torch.testing.assert_close(torch.diagonal(kernel), torch.ones(16, dtype=torch.float64))


def test_ntk_pass_is_opt_in_and_is_the_gram_matrix_of_per_image_gradients(data_dir):
    """The ntk pass runs only when asked; its kernel is <df_i/dW, df_j/dW> over the first NTK_IMAGES images (f_i
    the summed logits of image i, W every Conv2d/Linear weight), computed here with one batched Jacobian of the
    same seeded network (torch.func, not the pass's loop of backwards)."""
    from greenmachine.probing.probe import NTK_IMAGES

    kernel, x = _opt_in_kernel(data_dir, "ntk", 20)
    assert kernel.shape == (NTK_IMAGES, NTK_IMAGES) and kernel.dtype == torch.float64
    net = init_network("tss", ARCH, "cifar10", 0, 11).train()
    torch.func.replace_all_batch_norm_modules_(net)  # no running statistics: train-mode outputs are the same
    names = {id(m.weight) for m in weighted_layers(net)}
    params = {n: p.detach() for n, p in net.named_parameters() if id(p) in names}

    def summed_logits(weights):  # the other parameters and the buffers are the module's own
        return torch.func.functional_call(net, weights, (x[:NTK_IMAGES],)).sum(dim=1)

    jac = torch.func.jacrev(summed_logits)(params)
    flat = torch.cat([j.reshape(NTK_IMAGES, -1) for j in jac.values()], dim=1).double()
    torch.testing.assert_close(kernel, flat @ flat.T, rtol=1e-4, atol=1e-6 * float(kernel.abs().max()))
    assert torch.all(torch.diagonal(kernel) > 0) and torch.allclose(kernel, kernel.T)


def test_swap_pass_is_opt_in_and_counts_distinct_activation_patterns(data_dir):
    """The swap pass runs only when asked; its count is the number of distinct on/off patterns, over the first
    SWAP_IMAGES images, of the units of every ReLU input, counted here directly as distinct rows of a boolean
    matrix on the same seeded network. With fewer images than SWAP_IMAGES the pass reads them all. Fused into the
    ce pass's forward, the count is the same."""
    from greenmachine.probing.probe import SWAP_IMAGES

    for batch_size in (20, 8):
        settings = ProbeSettings("tss", "cifar10", batch_size=batch_size)
        x, y = probe_batch(str(data_dir), "cifar10", batch_size, 0)
        assert "swap" not in probe_network(11, ARCH, settings, x, y).tensors
        probe = probe_network(11, ARCH, settings, x, y, groups=("swap",))
        assert set(probe.tensors) == {"swap"} and set(probe.pass_seconds) == {"swap"}
        (count,) = probe.tensors["swap"]
        n = min(batch_size, SWAP_IMAGES)
        net = init_network("tss", ARCH, "cifar10", 0, 11).train()
        units: list[torch.Tensor] = []
        hooks = [m.register_forward_pre_hook(lambda _m, inp: units.append((inp[0][:n] > 0).reshape(n, -1).T.clone()))
                 for m in net.modules() if isinstance(m, torch.nn.ReLU)]
        with torch.no_grad():
            net(x)
        for h in hooks:
            h.remove()
        direct = torch.unique(torch.cat(units), dim=0).shape[0]
        assert count.dtype == torch.float64 and count.shape == (1,) and int(count.item()) == direct
        assert 1 < direct <= min(2**n, sum(u.shape[0] for u in units))
        # with the ce pass the patterns come from its forward: the same count, each pass timed on its own
        fused = probe_network(11, ARCH, settings, x, y, groups=("ce", "swap"))
        assert torch.equal(fused.tensors["swap"][0], count) and set(fused.pass_seconds) == {"ce", "swap"}


def test_cache_hit_skips_probing(tmp_path, data_dir, monkeypatch):
    cache = ProbeCache(tmp_path, data_dir=data_dir)
    settings = ProbeSettings("tss", "cifar10", batch_size=8)
    items = [(11, ARCH)]
    first = probe_sample(items, settings, data_dir, cache=cache)

    def fail(*args, **kwargs):
        raise AssertionError("probed again despite the cache")

    monkeypatch.setattr(cache_module, "probe_network", fail)
    second = probe_sample(items, settings, data_dir, cache=cache)
    for name in GROUPS["ce"] + GROUPS["synflow"] + GROUPS["spectrum"]:
        for a, b in zip(first[0].tensors[name], second[0].tensors[name]):
            assert torch.equal(a, b)
    # another minibatch seed is another key: it must probe
    with pytest.raises(AssertionError, match="probed again"):
        probe_sample(items, ProbeSettings("tss", "cifar10", batch_size=8, batch_seed=1), data_dir, cache=cache)


def test_only_requested_passes_run(tmp_path, data_dir):
    settings = ProbeSettings("tss", "cifar10", batch_size=8)
    (probe,) = probe_sample([(11, ARCH)], settings, data_dir, groups=("synflow",),
                            cache=ProbeCache(tmp_path, data_dir=data_dir))
    assert set(probe.tensors) == {"synflow_grad"}
    assert len(list(tmp_path.rglob("synflow-*.pt"))) == 1 and not list(tmp_path.rglob("ce-*.pt"))


def test_truncated_cache_file_is_probed_again(tmp_path, data_dir):
    cache = ProbeCache(tmp_path, data_dir=data_dir)
    settings = ProbeSettings("tss", "cifar10", batch_size=8)
    probe_sample([(11, ARCH)], settings, data_dir, groups=("synflow",), cache=cache)
    (path,) = tmp_path.rglob("synflow-*.pt")
    path.write_bytes(path.read_bytes()[:100])
    (probe,) = probe_sample([(11, ARCH)], settings, data_dir, groups=("synflow",), cache=cache)
    assert len(probe.tensors["synflow_grad"]) > 0


def test_a_tree_needs_only_its_own_pass(tmp_path, data_dir, tss_truth):
    """A ReLU-side tree scored from the spectrum pass alone equals the same tree on a full probe."""
    from greenmachine.proxies.primitives import evaluate, parse_expression
    from greenmachine.probing.terminals import ProbeBatch

    settings = ProbeSettings("tss", "cifar10", batch_size=8)
    items = [(i, tss_truth.arch(i)) for i in (11, 284, 5)]
    full = ProbeBatch(probe_sample(items, settings, data_dir, cache=ProbeCache(tmp_path, data_dir=data_dir)))
    only = ProbeBatch(probe_sample(items, settings, data_dir, groups=("spectrum",)))
    tokens = parse_expression("add(a_sum_layers(e_min(corr_eig)), a_mean_layers(al_one))")
    assert torch.equal(evaluate(tokens, full), evaluate(tokens, only))
    assert float(evaluate(tokens, only).abs().min()) > 0


@pytest.mark.parametrize("space,arch", [
    ("tss", "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_1x1~2|"),
    ("sss", "8:16:24:32:64"),
])
def test_synflow_in_place_matches_the_copy_and_restores_the_network(space, arch):
    """The probe's synflow pass works on the network itself (no deepcopy): the gradients must be bit-identical to
    the copied network's (the synflow baseline's reference), and the network must come back exactly as it was."""
    from greenmachine.probing.probe import init_network, probe_synflow, synflow_network, weighted_layers

    net = init_network(space, arch, "cifar10", 0, 7)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    net.eval()  # running statistics untouched by the comparison forwards
    out_before = net(x).detach()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modules_before = [type(m) for m in net.modules()]

    ref = synflow_network(net)
    torch.sum(ref(torch.ones(1, 3, 32, 32, dtype=torch.float64))).backward()
    expected = [m.weight.grad.flatten() for m in weighted_layers(ref)]
    got = probe_synflow(net, 32)["synflow_grad"]
    assert len(got) == len(expected)
    assert all(torch.equal(a, b) for a, b in zip(got, expected))

    after = net.state_dict()
    assert set(after) == set(before)
    assert all(after[k].dtype == before[k].dtype and torch.equal(after[k], before[k]) for k in before)
    assert [type(m) for m in net.modules()] == modules_before
    assert all(p.grad is None for p in net.parameters())
    net.eval()
    assert torch.equal(net(x).detach(), out_before)


@pytest.mark.parametrize("groups", [("spectrum",), ("ce", "spectrum")])
def test_spectrum_images_average_the_spectra_each_image_would_give_first(data_dir, groups):
    """With spectrum_images K, corr_eig is the mean of the K spectra that a one-image probe gives with each of the
    first K images put first: train-mode BatchNorm statistics do not depend on the images' order, so moving an
    image to the front changes nothing but which map is read. Alone and fused with the ce pass alike."""
    from dataclasses import replace

    base = ProbeSettings("tss", "cifar10", batch_size=16)
    x, y = probe_batch(str(data_dir), "cifar10", 16, 0)
    firsts = []
    for k in range(3):
        order = [k] + [i for i in range(16) if i != k]
        firsts.append(probe_network(11, ARCH, base, x[order], y[order], groups).tensors["corr_eig"])
    averaged = probe_network(11, ARCH, replace(base, spectrum_images=3), x, y, groups).tensors["corr_eig"]
    assert not torch.allclose(firsts[0][0], firsts[1][0])  # the images' spectra differ, or this shows nothing
    assert len(averaged) == len(firsts[0])
    for r, eig in enumerate(averaged):
        torch.testing.assert_close(eig, sum(f[r] for f in firsts) / 3, rtol=1e-9, atol=1e-9)


def test_batched_spectra_are_the_per_image_spectra():
    from greenmachine.probing.probe import batched_correlation_eigenvalues, channel_correlation_eigenvalues

    maps = torch.randn(5, 12, 6, 6)
    maps[2, 4] = 3.0  # a constant channel: NaN correlations, set to 0 in both
    torch.testing.assert_close(batched_correlation_eigenvalues(maps),
                               torch.stack([channel_correlation_eigenvalues(m) for m in maps]), rtol=0, atol=1e-12)


def test_spectrum_images_is_part_of_the_cache_key_only_when_it_is_not_one():
    base = ProbeSettings("tss", "cifar10")
    assert "spectrum_images" not in base.key()  # every earlier cache entry keeps its key
    from dataclasses import replace

    assert replace(base, spectrum_images=4).key()["spectrum_images"] == 4
