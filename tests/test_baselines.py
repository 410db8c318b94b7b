"""Hand-designed proxies: each checked by a property that a wrong implementation breaks, on real networks and
real images; the comparison command end to end."""

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import OFFICIAL_INDICES, TSS_OFFICIAL
from greenmachine.proxies import baselines as bl
from greenmachine.proxies.baselines import ProxyInputs, get_proxy, load_all
from greenmachine.cli import main
from greenmachine.probing.datasets import probe_batch
from greenmachine.probing.probe import init_network
from greenmachine.spaces.truth import official_costs

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|"


@pytest.fixture(scope="module")
def batch(data_dir):
    return probe_batch(str(data_dir), "cifar10", 16, 0)


def inputs(batch, images=None, labels=None, seed=0, arch=ARCH):
    x, y = batch
    net = init_network("tss", arch, "cifar10", 0, 11)
    return ProxyInputs(net, x if images is None else images, y if labels is None else labels, 10, seed=seed)


def value(name, inp):
    return get_proxy(name)(inp)


def test_registry_has_every_proxy_of_the_issue():
    assert {"synflow", "snip", "grasp", "fisher", "grad_norm", "jacov", "naswot", "zen", "params", "flops",
            "zico", "meco", "ntk_cond", "swap"} <= set(load_all())


def test_synflow_and_zen_ignore_images_and_labels(batch):
    x, y = batch
    other_x, other_y = torch.randn_like(x), torch.roll(y, 1)
    for name in ("synflow", "zen"):
        assert value(name, inputs(batch)) == pytest.approx(value(name, inputs(batch, other_x, other_y)), rel=1e-12)
    assert value("synflow", inputs(batch)) > 0


@pytest.mark.parametrize("name", ["naswot", "jacov", "meco", "ntk_cond", "swap"])
def test_label_free_proxies_ignore_labels_but_not_images(batch, name):
    x, y = batch
    a = value(name, inputs(batch))
    assert a == pytest.approx(value(name, inputs(batch, labels=torch.roll(y, 3))), rel=1e-9)
    assert a != pytest.approx(value(name, inputs(batch, images=torch.flip(x, dims=[2]))), rel=1e-6)  # upside down


@pytest.mark.parametrize("name,power", [("snip", 1), ("grad_norm", 1), ("fisher", 2), ("grasp", 2), ("zico", 0)])
def test_gradient_proxies_scale_with_the_loss(batch, monkeypatch, name, power):
    """Multiplying the loss by c multiplies the gradient by c: snip and grad_norm scale by c, fisher and GRASP
    (a product of two gradients) by c^2, and ZiCo (mean|g| / std g) not at all."""
    base = value(name, inputs(batch))
    c = 3.0
    orig = F.cross_entropy
    scaled = lambda *a, **k: c * orig(*a, **k)  # noqa: E731
    for mod in (bl, bl.grasp, bl.zico):
        monkeypatch.setattr(mod.F, "cross_entropy", scaled)
    got = value(name, inputs(batch))
    if power == 0:
        assert got == pytest.approx(base, rel=1e-3)  # float32 gradients: exact only up to rounding
    else:
        assert got == pytest.approx(base * c**power, rel=1e-3)
        assert abs(base) > 0


def test_jacov_ignores_the_scale_of_the_logits(batch):
    class Scaled(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return 7.0 * self.net(x)

    a = value("jacov", inputs(batch))
    inp = inputs(batch)
    inp.network = Scaled(inp.network)
    assert value("jacov", inp) == pytest.approx(a, rel=1e-6)


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "ImageNet16-120"])
def test_params_and_flops_equal_the_official_records(data_dir, dataset):
    from greenmachine.spaces.truth import open_official

    archs = open_official(TSS_OFFICIAL, "tss").meta_archs
    res = 16 if dataset == "ImageNet16-120" else 32
    x = torch.zeros(4, 3, res, res)
    y = torch.zeros(4, dtype=torch.long)
    for i in OFFICIAL_INDICES:
        net = init_network("tss", archs[i], dataset, 0, i)
        inp = ProxyInputs(net, x, y, 10, seed=0)
        official = official_costs(TSS_OFFICIAL, "tss", i, dataset)
        assert value("params", inp) / 1e6 == pytest.approx(official["params"], abs=1e-9)
        assert value("flops", inp) == pytest.approx(official["flops"], rel=1e-6)


def test_baselines_command_end_to_end(tmp_path, capsys, env):
    out = tmp_path / "table.csv"
    with pytest.raises(SystemExit) as exc:
        main(["baselines", "--archs", "11,284,1,7,40,500", "--proxies", "naswot,synflow,params,zico,meco",
              "--batch-size", "16", "--out", str(out), "--quiet"])
    stdout = capsys.readouterr().out
    assert exc.value.code == 0
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 6 and list(rows[0])[:3] == ["index", "arch", "accuracy"]
    assert {"naswot", "synflow", "params", "zico", "meco"} <= set(rows[0])
    summary = json.loads((tmp_path / "table.summary.json").read_text())
    taus = [p["kendall_tau"] for p in summary["proxies"]]
    assert taus == sorted(taus, reverse=True)  # the table is sorted
    assert (tmp_path / "table.png").stat().st_size > 1000
    assert "naswot: kendall_tau=" in stdout
    with pytest.raises(SystemExit) as exc:
        main(["baselines", "--proxies", "naswot,bogus", "--quiet"])
    assert exc.value.code == 2 and "unknown baseline proxy bogus" in capsys.readouterr().err


def test_infinite_scores_rank_at_the_ends_and_nan_is_left_out():
    from greenmachine.proxies.comparison import proxy_stats

    acc = np.array([10.0, 50.0, 60.0, 70.0, 80.0])
    s = proxy_stats("naswot", "baseline", np.array([-np.inf, 1.0, 2.0, 3.0, np.inf]), acc, 1.0)
    assert s.kendall_tau == pytest.approx(1.0) and s.valid == 5
    s = proxy_stats("jacov", "baseline", np.array([np.nan, 1.0, 2.0, 3.0, 4.0]), acc, 1.0)
    assert s.kendall_tau == pytest.approx(1.0) and s.valid == 4
