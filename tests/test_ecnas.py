"""The EC-NAS space (NAS-Bench-101 cells of <= 4 / <= 5 vertices, measured 4-epoch CIFAR-10 training energy)."""

import csv
import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import DATA
from greenmachine.errors import GreenmachineError
from greenmachine.spaces import count_params, get_space
from greenmachine.spaces.nb101_cells import cell_from_graph, parse_cell

ECNAS = DATA / "ecnas"
VARIANTS = [("ecnas-4v", "4V9E", 91), ("ecnas-5v", "5V9E", 2532)]


@pytest.fixture(scope="module")
def truth5():
    space = get_space("ecnas-5v")
    return space.load_truth(space.find_truth(DATA))


@pytest.fixture(scope="module")
def truth4():
    space = get_space("ecnas-4v")
    return space.load_truth(space.find_truth(DATA))


@pytest.mark.parametrize("name,tag,size", VARIANTS)
def test_generated_cells_are_the_benchmark_graphs_keyed_by_module_hash(name, tag, size):
    """Every cell of the space, generated without data, is a key of the shared graphs file, with the same graph;
    the index order is ascending hash (the file's key order)."""
    space = get_space(name)
    graphs = json.loads((ECNAS / f"generated_graphs_{tag}.json").read_text())
    assert space.size == size == len(graphs)
    assert list(space.archs()) == sorted(graphs) == list(graphs)
    for key, (matrix, labels) in graphs.items():
        cell = cell_from_graph(matrix, labels)
        assert cell.module_hash() == key
        assert space.cell(key) == cell
        assert space.arch_of_cell(cell) == key


@pytest.mark.parametrize("name,tag,size", VARIANTS)
def test_measured_rows_hash_to_their_module_hash(name, tag, size):
    space = get_space(name)
    with open(ECNAS / f"ecnas_{tag}_4epochs_measured.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        assert space.arch_of_cell(parse_cell(row["adjacency"], row["operations"])) == row["module_hash"]


def test_parameter_counts_equal_the_benchmark_trainable_params():
    """nasbench_pytorch's Placeholders hold one dummy parameter each; the space's network has none, and counts
    exactly EC-NAS' trainable_params (25 cells: 5 of <= 4 vertices, 20 of <= 5, drawn at random)."""
    rng = random.Random(0)
    checked = 0
    for name, tag, _ in VARIANTS:
        space = get_space(name)
        with open(ECNAS / f"ecnas_{tag}_4epochs_measured.csv") as f:
            rows = {r["module_hash"]: int(r["trainable_params"]) for r in csv.DictReader(f)}
        for h in rng.sample(sorted(rows), 5 if name == "ecnas-4v" else 20):
            net = space.build_network(h, "cifar10")
            assert count_params(net) == rows[h], h
            checked += 1
    assert checked == 25


def test_network_forward_returns_logits_and_the_feature_map_module():
    space = get_space("ecnas-5v")
    arch = "673e162f517593c61ab2c3ce2cd7fdec"
    net = space.build_network(arch, "cifar10")
    feats = []
    net.feature_module.register_forward_hook(lambda _m, _i, o: feats.append(o))
    out = net(torch.zeros(2, 3, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)
    assert feats[0].shape == (2, 512, 8, 8)  # 128 channels doubled twice, 32x32 pooled twice
    with pytest.raises(GreenmachineError, match="ground truth for cifar10 only"):
        space.build_network(arch, "cifar100")


def test_ground_truth_equals_hand_read_rows(truth4, truth5):
    # 4 vertices: the mean of the 3 repeats of 001a6f... (rows 2-4 of the CSV), the spread kept
    i = truth4.index_of("001a6fcc8b38cbc515be788a86bdc804")
    assert i == 0 and truth4.arch(0) == "001a6fcc8b38cbc515be788a86bdc804"
    acc = [0.28515625, 0.3569711446762085, 0.39312902092933655]
    assert truth4.accuracy["cifar10"][i] == pytest.approx(100 * np.mean(acc))
    assert truth4.metric("accuracy_std", "cifar10")[i] == pytest.approx(100 * np.std(acc, ddof=1))
    assert truth4.metric("val_accuracy", "cifar10")[i] == pytest.approx(
        100 * np.mean([0.28705930709838867, 0.3606770932674408, 0.40655046701431274]))
    assert truth4.metric("train_energy_kwh", "cifar10")[i] == pytest.approx(np.mean([0.015961, 0.013719, 0.013227]))
    assert truth4.metric("co2eq_g", "cifar10")[i] == pytest.approx(np.mean([1.404582, 1.330748, 1.164013]))
    secs = [71.40299987792969, 71.61700439453125, 71.26499938964844]
    assert truth4.metric("train_seconds", "cifar10")[i] == pytest.approx(np.mean(secs))
    assert truth4.train_seconds_per_epoch["cifar10"][i] == pytest.approx(np.mean(secs) / 4)
    assert truth4.metric("params", "cifar10")[i] == 1756298
    assert truth4.metric("repeats", "cifar10")[i] == 3
    # 5 vertices: one repeat; the same hash is measured again there (other run, other values)
    j = truth5.index_of("001a6fcc8b38cbc515be788a86bdc804")
    assert truth5.accuracy["cifar10"][j] == pytest.approx(32.281652092933655)
    assert truth5.metric("train_energy_kwh", "cifar10")[j] == pytest.approx(0.015896999999999998)
    k = truth5.index_of("673e162f517593c61ab2c3ce2cd7fdec")
    assert truth5.accuracy["cifar10"][k] == pytest.approx(62.87059187889099)
    assert truth5.metric("val_accuracy", "cifar10")[k] == pytest.approx(63.25120329856873)
    assert truth5.metric("train_seconds", "cifar10")[k] == pytest.approx(67.95399475097656)
    assert truth5.metric("train_energy_kwh", "cifar10")[k] == pytest.approx(0.013177999999999999)
    assert truth5.metric("co2eq_g", "cifar10")[k] == pytest.approx(1.916023)
    assert truth5.metric("params", "cifar10")[k] == 1734184
    assert truth5.metric("accuracy_std", "cifar10") is None  # one repeat: no spread
    # every cell has a measurement
    assert len(truth5.available("cifar10")) == 2532 and len(truth4.available("cifar10")) == 91
    assert truth5.hp == "4" and truth5.metric("train_energy_kwh", "cifar10").shape == (2532,)


def test_ground_truth_has_cifar10_only(truth5):
    with pytest.raises(GreenmachineError, match="has cifar10 only"):
        truth5.available("cifar100")


@pytest.mark.parametrize("adjacency,operations,expect", [
    ("0110001000010001", "input,maxpool3x3,maxpool3x3,output", "strictly upper-triangular"),
    ("011000100001000", "input,maxpool3x3,maxpool3x3,output", "adjacency has 15 entries"),
    ("01100010000100x0", "input,maxpool3x3,maxpool3x3,output", "0/1 digits"),
    ("0110001000010000", "input,maxpool3x3,conv5x5-bn-relu,output", "unknown operation 'conv5x5-bn-relu'"),
    ("0100000000000000", "input,maxpool3x3,maxpool3x3,output", "no path from input to output"),
])
def test_malformed_cells_are_refused_with_one_line(adjacency, operations, expect):
    with pytest.raises(GreenmachineError, match=expect) as info:
        get_space("ecnas-5v").arch_of_cell(parse_cell(adjacency, operations))
    assert "\n" not in str(info.value)


def test_a_cell_or_hash_not_in_the_benchmark_is_refused(truth4):
    # a 5-vertex cell is a NAS-Bench-101 cell but not one of ecnas-4v
    five = parse_cell("0110000101000110000100000", "input,maxpool3x3,conv1x1-bn-relu,conv3x3-bn-relu,output")
    with pytest.raises(GreenmachineError, match="is not a cell of ecnas-4v"):
        get_space("ecnas-4v").arch_of_cell(five)
    with pytest.raises(GreenmachineError, match="is not a cell of ecnas-5v"):
        get_space("ecnas-5v").validate("0" * 32)
    with pytest.raises(GreenmachineError, match="module hash"):
        get_space("ecnas-5v").validate("not-a-hash")
    with pytest.raises(GreenmachineError, match="is not a cell of ecnas-4v"):
        truth4.parse_archs([five.module_hash()], "cifar10")


def test_cli_refuses_an_unknown_hash_with_one_line(tmp_path, env):
    proc = subprocess.run(
        [sys.executable, "-m", "greenmachine", "baselines", "--space", "ecnas-5v", "--dataset", "cifar10",
         "--archs", "0" * 32 + ",673e162f517593c61ab2c3ce2cd7fdec", "--proxies", "params", "--quiet"],
        capture_output=True, text=True, env=env,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: module hash 00000000000000000000000000000000 is not a cell of ecnas-5v")
    proc = subprocess.run(
        [sys.executable, "-m", "greenmachine", "baselines", "--space", "ecnas-5v", "--dataset", "cifar100",
         "--archs", "1,2", "--proxies", "params", "--quiet"],
        capture_output=True, text=True, env=env,
    )
    assert proc.returncode == 2 and "cifar10" in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.parametrize("name", ["ecnas-4v", "ecnas-5v"])
def test_search_operators_stay_in_the_space(name):
    space = get_space(name)
    rng = random.Random(3)
    for _ in range(100):
        a, b = space.random_arch(rng), space.random_arch(rng)
        m = space.mutate(a, rng)
        assert m != a and space.validate(m) == m
        assert m in space.neighbours(a)
        ca, cm = space.cell(a), space.cell(m)
        if ca.matrix == cm.matrix:  # an operation changed: exactly one
            assert sum(x != y for x, y in zip(ca.ops, cm.ops)) == 1
        elif ca.num_vertices == cm.num_vertices and ca.ops == cm.ops:  # an edge changed and nothing was pruned
            assert sum(x != y for r, q in zip(ca.matrix, cm.matrix) for x, y in zip(r, q)) == 1
        c, d = space.crossover(a, b, rng)
        assert space.cell(c).matrix == ca.matrix and space.cell(d).matrix == space.cell(b).matrix
    assert space.random_arch(random.Random(5)) == space.random_arch(random.Random(5))
    # the 2-vertex cell (input -> output) has no op to change and no edge to flip: a vertex is inserted
    two = space.arch_of_cell(parse_cell("0100", "input,output"))
    assert {space.cell(h).num_vertices for h in space.neighbours(two)} == {3}


def test_default_evolve_config_of_ecnas_is_its_own():
    from greenmachine.config import load_config

    cfg = load_config(None, space="ecnas-5v").override(space="ecnas-5v").validate()
    assert (cfg.sample_size, cfg.batch_size) == (get_space("ecnas-5v").evolve_defaults["sample_size"],
                                                 get_space("ecnas-5v").evolve_defaults["batch_size"])
    assert load_config(None).sample_size == 200  # TSS keeps the package defaults
