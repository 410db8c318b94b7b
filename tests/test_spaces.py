"""Search spaces: official index order, network construction, parameter counts against the official records."""

import pytest

from conftest import OFFICIAL_INDICES, SSS_OFFICIAL, TSS_OFFICIAL
from greenmachine.errors import GreenmachineError
from greenmachine.spaces import (
    SSS_GENOTYPE,
    build_network,
    count_params,
    generate_tss_archs,
    sss_archs,
    validate_arch,
)
from greenmachine.spaces.truth import official_costs, open_official


def test_tss_generated_set_is_the_official_list_and_table_follows_official_order(tss_truth):
    official = open_official(TSS_OFFICIAL, "tss").meta_archs
    assert len(official) == 15625
    assert set(official) == generate_tss_archs()
    assert tss_truth.archs == list(official)  # the compact table is in official index order


def test_sss_strings_are_the_official_order():
    official = open_official(SSS_OFFICIAL, "sss").meta_archs
    assert list(sss_archs()) == list(official)
    assert sss_archs()[11] == "8:8:8:16:32" and len(sss_archs()) == 32768


@pytest.mark.parametrize("space,folder", [("tss", TSS_OFFICIAL), ("sss", SSS_OFFICIAL)])
@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "ImageNet16-120"])
def test_parameter_counts_match_official_records(space, folder, dataset):
    api = open_official(folder, space)
    for index in OFFICIAL_INDICES:
        arch = api.meta_archs[index]
        net = build_network(space, arch, dataset)
        official = official_costs(folder, space, index, dataset)["params"]
        assert count_params(net) / 1e6 == pytest.approx(official, abs=1e-9)
        config = api.get_net_config(index, dataset)
        if space == "sss":
            assert config["genotype"] == SSS_GENOTYPE and config["channels"] == arch


def test_forward_shapes():
    import torch

    net = build_network("sss", "8:16:24:32:64", "ImageNet16-120")
    feats, logits = net(torch.zeros(2, 3, 16, 16))
    assert logits.shape == (2, 120)


@pytest.mark.parametrize(
    "space,arch",
    [("tss", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|"), ("sss", "8:8:8:8"), ("sss", "8:8:8:8:9"), ("tss", "")],
)
def test_invalid_arch_strings_are_rejected(space, arch):
    with pytest.raises(GreenmachineError):
        validate_arch(space, arch)
