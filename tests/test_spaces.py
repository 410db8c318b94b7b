"""Search spaces: the registry, official index order, network construction (logits only), parameter counts against
the official records, validation, and the search operators."""

import random

import pytest
import torch

from conftest import OFFICIAL_INDICES, SSS_OFFICIAL, TSS_OFFICIAL
from greenmachine.errors import GreenmachineError
from greenmachine.spaces import count_params, dataset_names, get_space, space_names
from greenmachine.spaces.sss import SSS_GENOTYPE, sss_archs
from greenmachine.spaces.truth import official_costs, open_official
from greenmachine.spaces.tss import generate_tss_archs


def test_registry_lists_every_space_and_refuses_unknown_names():
    assert {"tss", "sss", "ecnas-4v", "ecnas-5v"} <= set(space_names())
    assert {"cifar10", "cifar100", "ImageNet16-120"} <= set(dataset_names())
    for name in space_names():
        space = get_space(name)
        assert space.name == name and space.size > 0 and space.datasets
        assert space.validate(space.example) == space.example
        assert get_space(name) is space  # one object per space
    with pytest.raises(GreenmachineError, match="unknown search space .nope.; choose one of: tss, sss, ecnas-4v, ecnas-5v"):
        get_space("nope")


def test_registry_and_cli_choices_import_no_torch():
    """The CLI builds its --space/--dataset choices from the registry; that must not import torch (fast --help)."""
    import subprocess
    import sys

    code = ("import sys; from greenmachine.spaces import space_names, dataset_names; space_names(); dataset_names(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_tss_generated_set_is_the_official_list_and_table_follows_official_order(tss_truth):
    official = open_official(TSS_OFFICIAL, "tss").meta_archs
    assert len(official) == 15625 == get_space("tss").size
    assert set(official) == generate_tss_archs()
    assert tss_truth.archs == list(official)  # the compact table is in official index order


def test_sss_strings_are_the_official_order():
    official = open_official(SSS_OFFICIAL, "sss").meta_archs
    assert list(sss_archs()) == list(official)
    assert sss_archs()[11] == "8:8:8:16:32" and len(sss_archs()) == 32768 == get_space("sss").size


@pytest.mark.parametrize("space,folder", [("tss", TSS_OFFICIAL), ("sss", SSS_OFFICIAL)])
@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "ImageNet16-120"])
def test_parameter_counts_match_official_records(space, folder, dataset):
    official_dir = open_official(folder, space)
    sp = get_space(space)
    for index in OFFICIAL_INDICES:
        arch = official_dir.meta_archs[index]
        net = sp.build_network(arch, dataset)
        official = official_costs(folder, space, index, dataset)["params"]
        assert count_params(net) / 1e6 == pytest.approx(official, abs=1e-9)
        config = official_dir.net_config(index, dataset)
        assert sp.net_config(arch, dataset) == config
        if space == "sss":
            assert config["genotype"] == SSS_GENOTYPE and config["channels"] == arch


@pytest.mark.parametrize("space,arch,res,classes", [
    ("sss", "8:16:24:32:64", 16, 120),
    ("tss", get_space("tss").example, 32, 100),
])
def test_forward_returns_logits_only_and_names_the_feature_module(space, arch, res, classes):
    dataset = {120: "ImageNet16-120", 100: "cifar100"}[classes]
    net = get_space(space).build_network(arch, dataset)
    out = net(torch.zeros(2, 3, res, res))
    assert isinstance(out, torch.Tensor) and out.shape == (2, classes)
    feats = []
    net.feature_module.register_forward_hook(lambda _m, _i, o: feats.append(o))
    net(torch.zeros(2, 3, res, res))
    assert feats and feats[0].dim() == 4  # the map before global pooling
    # the wrapper holds each layer once, and copies keep pointing into themselves
    import copy

    twin = copy.deepcopy(net)
    assert any(twin.feature_module is m for m in twin.modules())
    assert len(list(net.modules())) == len({id(m) for m in net.modules()})


@pytest.mark.parametrize(
    "space,arch",
    [("tss", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|"), ("sss", "8:8:8:8"), ("sss", "8:8:8:8:9"), ("tss", "")],
)
def test_invalid_arch_strings_are_rejected(space, arch):
    with pytest.raises(GreenmachineError):
        get_space(space).validate(arch)


def test_unknown_dataset_for_a_space_is_one_line():
    from greenmachine.config import EvolveConfig

    with pytest.raises(GreenmachineError, match="unknown dataset"):
        EvolveConfig(space="tss", dataset="mnist").validate()


@pytest.mark.parametrize("name", ["tss", "sss"])
def test_search_operators_stay_in_the_space_and_change_one_gene(name):
    space = get_space(name)
    rng = random.Random(0)
    for _ in range(50):
        a, b = space.random_arch(rng), space.random_arch(rng)
        assert space.validate(a) == a
        m = space.mutate(a, rng)
        assert m != a and space.validate(m) == m
        genes = (lambda s: s.split(":")) if name == "sss" else (lambda s: s.split("|"))
        assert sum(x != y for x, y in zip(genes(a), genes(m))) == 1
        c, d = space.crossover(a, b, rng)
        space.validate(c), space.validate(d)
        # each gene of a child comes from a parent at the same position
        for child in (c, d):
            assert all(x in (y, z) for x, y, z in zip(genes(child), genes(a), genes(b)))
    # seeded: the same rng seed gives the same draws
    assert [space.random_arch(random.Random(7)) for _ in range(2)] == [space.random_arch(random.Random(7))] * 2
