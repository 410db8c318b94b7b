"""NAS-Bench-101 cells: parsing of the three EC-NAS spellings, the module hash, padding, encoding, validation."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from greenmachine.errors import GreenmachineError
from greenmachine.spaces.nb101_cells import (
    ENCODING_LENGTH,
    OPS,
    Cell,
    cell_from_graph,
    encode,
    parse_cell,
    network_cost,
    parse_cell_codes,
)

from conftest import DATA

ECNAS = DATA / "ecnas"


def test_ops_are_nasbench_canonical_order():
    assert OPS == ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")


@pytest.mark.parametrize("name", ["generated_graphs_4V9E.json", "generated_graphs_5V9E.json"])
def test_module_hash_reproduces_every_json_key(name):
    graphs = json.loads((ECNAS / name).read_text())
    wrong = [key for key, (matrix, labels) in graphs.items() if cell_from_graph(matrix, labels).module_hash() != key]
    assert not wrong and len(graphs) in (91, 2532)


@pytest.mark.parametrize("name", ["ecnas_4V9E_4epochs_measured.csv", "ecnas_5V9E_4epochs_measured.csv"])
def test_module_hash_reproduces_csv_column(name):
    with open(ECNAS / name, newline="") as f:
        rows = list(csv.DictReader(f))
    wrong = [r["module_hash"] for r in rows if parse_cell(r["adjacency"], r["operations"]).module_hash() != r["module_hash"]]
    assert not wrong and len(rows) in (273, 2532)


def test_csv_and_json_spellings_give_equal_cells():
    graphs = json.loads((ECNAS / "generated_graphs_5V9E.json").read_text())
    with open(ECNAS / "ecnas_5V9E_4epochs_measured.csv", newline="") as f:
        for r in list(csv.DictReader(f))[:200]:
            assert parse_cell(r["adjacency"], r["operations"]) == cell_from_graph(*graphs[r["module_hash"]])


def test_surrogate_7v_rows_parse_and_pad_back_exactly():
    with open(ECNAS / "surrogate_7V_train_energy.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    hashes = set()
    for r in rows:
        cell = parse_cell_codes(r["adjacency_7x7"], r["op_codes"])
        m, ops = cell.padded(7)
        assert "".join(map(str, m.ravel())) == r["adjacency_7x7"]
        assert ",".join(ops) == r["operations_inferred"]
        hashes.add(cell.module_hash())
    assert len(hashes) == len(rows) == 4310  # distinct networks


def test_hand_checked_cell_encoding():
    # input -> maxpool -> maxpool -> output, and input -> second maxpool (row 1 of the 5V CSV)
    cell = parse_cell("0110001000010000", "input,maxpool3x3,maxpool3x3,output")
    assert cell.matrix == ((0, 1, 1, 0), (0, 0, 1, 0), (0, 0, 0, 1), (0, 0, 0, 0))
    assert cell.num_edges == 4 and cell.module_hash() == "001a6fcc8b38cbc515be788a86bdc804"
    m, ops = cell.padded(7)
    assert m.shape == (7, 7) and m[:4, :4].tolist() == [list(r) for r in cell.matrix] and not m[4:].any()
    assert ops == ("input", "maxpool3x3", "maxpool3x3", "output", "pad", "pad", "pad")
    x = encode(cell)
    assert x.shape == (ENCODING_LENGTH,) == (56,)
    upper = x[:21]
    # upper triangle row-major: (0,1),(0,2),(0,3),...,(0,6),(1,2),...,(1,6),(2,3),...
    expected = np.zeros(21)
    expected[[0, 1, 6, 11]] = 1  # (0,1), (0,2), (1,2), (2,3)
    assert upper.tolist() == expected.tolist()
    onehot = x[21:].reshape(7, 5)  # input, conv3x3, conv1x1, maxpool, output
    assert onehot.tolist() == [[1, 0, 0, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1],
                               [0] * 5, [0] * 5, [0] * 5]


def test_smallest_cell_and_surrogate_codes():
    cell = parse_cell("0100", "input,output")
    assert encode(cell)[0] == 1 and encode(cell)[1:21].sum() == 0
    c7 = parse_cell_codes("0" * 0 + "0110000" + "0001000" + "0001000" + "0000100" + "0000000" * 3, "1324500")
    assert c7.ops == ("input", "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3", "output")
    assert c7 == cell_from_graph(c7.array().tolist(), [-1, 0, 1, 2, -2])


def test_dangling_vertex_is_pruned_like_nasbench():
    # vertex 2 (conv1x1) has an in-edge but no path to the output: NAS-Bench-101 drops it
    cell = parse_cell("0110" "0001" "0000" "0000", "input,conv3x3-bn-relu,conv1x1-bn-relu,output")
    assert cell.ops == ("input", "conv3x3-bn-relu", "output")
    assert cell.module_hash() == parse_cell("010001000", "input,conv3x3-bn-relu,output").module_hash()


def test_hash_is_graph_invariant():
    a = parse_cell("0110000100010000", "input,conv3x3-bn-relu,conv1x1-bn-relu,output")
    b = parse_cell("0110000100010000", "input,conv1x1-bn-relu,conv3x3-bn-relu,output")
    assert a.module_hash() == b.module_hash()  # the two branches swapped are the same network
    c = parse_cell("0110000100010000", "input,conv1x1-bn-relu,conv1x1-bn-relu,output")
    assert a.module_hash() != c.module_hash()


@pytest.mark.parametrize("adjacency,ops,message", [
    ("011000100", "input,conv3x3-bn-relu,output,output", "entries but 4 operations"),
    ("0120001000010000", "input,maxpool3x3,maxpool3x3,output", "0/1 digits"),
    ("0110001010010000", "input,maxpool3x3,maxpool3x3,output", "upper-triangular"),
    ("0110001000010000", "input,conv5x5,maxpool3x3,output", "unknown operation 'conv5x5'"),
    ("0110001000010000", "maxpool3x3,input,maxpool3x3,output", "start with 'input'"),
    ("0110001000010000", "input,output,maxpool3x3,output", "start with 'input'"),
    ("0110001000010000", "input,maxpool3x3,maxpool3x3,conv3x3-bn-relu", "start with 'input'"),
    ("0100000000010000", "input,maxpool3x3,maxpool3x3,output", "no path"),
    ("0" * 64, ",".join(["input"] + ["maxpool3x3"] * 6 + ["output"]), "2 to 7 vertices"),
])
def test_malformed_cells_raise_one_line(adjacency, ops, message):
    with pytest.raises(GreenmachineError, match=message) as exc:
        parse_cell(adjacency, ops)
    assert "\n" not in str(exc.value)


def test_malformed_constructions_raise():
    with pytest.raises(GreenmachineError, match="0 or 1"):
        Cell(((0, 2), (0, 0)), ("input", "output"))
    with pytest.raises(GreenmachineError, match="at most 9 edges"):
        full = tuple(tuple(1 if j > i else 0 for j in range(6)) for i in range(6))  # 15 edges
        Cell(full, ("input", *["conv3x3-bn-relu"] * 4, "output"))
    with pytest.raises(GreenmachineError, match="op codes"):
        parse_cell_codes("0" * 49, "1336235")
    with pytest.raises(GreenmachineError, match="not a NAS-Bench-101 graph"):
        cell_from_graph([[0, 1], [0, 0]], [-1, 7])
    with pytest.raises(GreenmachineError, match="'pad' vertex has edges"):
        parse_cell("0101" "0000" "0000" "0000", "input,output,pad,pad")
    with pytest.raises(GreenmachineError, match="cannot pad"):
        parse_cell("0100", "input,output").padded(1)


@pytest.mark.parametrize("name,adj,ops,parse", [
    ("ecnas_5V9E_4epochs_measured.csv", "adjacency", "operations", parse_cell),
    ("surrogate_7V_train_energy.csv", "adjacency_7x7", "op_codes", parse_cell_codes),
])
def test_network_params_equal_ecnas_trainable_params(name, adj, ops, parse):
    with open(ECNAS / name, newline="") as f:
        rows = list(csv.DictReader(f))
    wrong = [r for r in rows if network_cost(parse(r[adj], r[ops])).params != int(r["trainable_params"])]
    assert not wrong


def test_network_cost_matches_the_torch_network():
    import torch
    from nasbench_pytorch.model import Network

    for cell in (parse_cell("0100", "input,output"),
                 parse_cell("0111000010000010000100000", "input,conv1x1-bn-relu,maxpool3x3,conv3x3-bn-relu,output")):
        net = Network((torch.tensor(cell.array()), list(cell.ops)), num_labels=10)
        cost = network_cost(cell)
        # nasbench_pytorch's Placeholder modules hold a dummy scalar each, which is not a weight of the network
        real = sum(p.numel() for name, p in net.named_parameters() if not name.endswith(".a"))
        assert cost.params == real
        macs = []
        hooks = [mod.register_forward_hook(lambda mod, i, o: macs.append(o.numel() * mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]))
                 for mod in net.modules() if isinstance(mod, torch.nn.Conv2d)]
        with torch.no_grad():
            net(torch.zeros(1, 3, 32, 32))
        for h in hooks:
            h.remove()
        assert cost.conv_macs == sum(macs)
