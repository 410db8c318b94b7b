"""`search --cost energy-predicted --energy-model MODEL.json` (issue 10): a surrogate fitted by `energy fit` is the
cost the search sees; the front is judged on EC-NAS' measured energy."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import DATA, gm

CSV5 = DATA / "ecnas" / "ecnas_5V9E_4epochs_measured.csv"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from click.testing import CliRunner
    from greenmachine.cli import cli

    folder = tmp_path_factory.mktemp("surrogate")
    with open(CSV5, newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for _, r in zip(range(60), reader)]
        columns = reader.fieldnames
    data = folder / "slice.csv"
    with open(data, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    path = folder / "model.json"
    result = CliRunner().invoke(cli, ["energy", "fit", "--data", str(data), "--holdout", "0", "--out", str(path)])
    assert result.exit_code == 0, result.output
    return path


def test_search_with_predicted_energy(capsys, tmp_path, model):
    from greenmachine.energy.surrogate import load_model
    from greenmachine.spaces import get_space

    out = tmp_path / "run"
    code, stdout, err = gm(capsys, "search", "--space", "ecnas-5v", "--objective", "params", "--cost",
                           "energy-predicted", "--energy-model", model, "--budget", 24, "--population", 8,
                           "--quiet", "--out", out, "--data-dir", DATA, "--no-cache")
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cost"]["name"] == "energy-predicted"
    assert 0 < summary["hv_ratio"] <= 1 + 1e-9
    # the front is judged on measured kWh: the knee's cost is the measured energy of its cell, not the prediction
    space = get_space("ecnas-5v")
    truth = space.load_truth(space.find_truth(DATA))
    measured = truth.metric("train_energy_kwh", "cifar10")
    knee = summary["knee"]
    assert knee["cost"] == pytest.approx(measured[knee["index"]])
    predicted = load_model(model).predict_cells([space.cell(knee["arch"])])[0]
    assert predicted != pytest.approx(measured[knee["index"]], rel=1e-9)


def test_energy_predicted_needs_a_model_and_a_cell_space(capsys, tmp_path, model):
    code, _, err = gm(capsys, "search", "--space", "ecnas-5v", "--objective", "params", "--cost", "energy-predicted",
                      "--out", tmp_path / "a", "--data-dir", DATA, "--no-cache")
    assert code == 2 and err.startswith("error:") and "--energy-model" in err and len(err.strip().splitlines()) == 1
    code, _, err = gm(capsys, "search", "--space", "ecnas-5v", "--objective", "params", "--cost", "energy",
                      "--energy-model", model, "--out", tmp_path / "b", "--data-dir", DATA, "--no-cache")
    assert code == 2 and "energy-predicted" in err
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something-else"}')
    code, _, err = gm(capsys, "search", "--space", "ecnas-5v", "--objective", "params", "--cost", "energy-predicted",
                      "--energy-model", bad, "--out", tmp_path / "c", "--data-dir", DATA, "--no-cache")
    assert code == 2 and err.startswith("error:") and "not a greenmachine energy model" in err
    code, _, err = gm(capsys, "search", "--space", "tss", "--objective", "accuracy", "--cost", "energy-predicted",
                      "--energy-model", model, "--out", tmp_path / "d", "--data-dir", DATA, "--no-cache")
    assert code == 2 and "NAS-Bench-101" in err
