"""Issue 6, "ground-truth tables are checked" and "no code runs from data files" for the official NATS-Bench reader.

Every table defect is refused with one line naming the file and the line; an official directory is read through
the restricted unpickler, so a planted pickle that would run code is refused before anything runs.
"""

import bz2
import csv
import os
import pickle
import shutil
import subprocess
import sys

import pytest

from conftest import DATA, TSS_OFFICIAL
from greenmachine.errors import GreenmachineError
from greenmachine.spaces.truth import load_official, load_table

TSS_TABLE = DATA / "nats" / "tss-hp200.csv"
ECNAS_5V = DATA / "ecnas" / "ecnas_5V9E_4epochs_measured.csv"


def _tss_lines(n: int = 6) -> list[str]:
    with open(TSS_TABLE) as f:
        return [next(f).rstrip("\n") for _ in range(n)]


def _write(tmp_path, lines, name="t.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _set(line: str, column: int, value: str) -> str:
    import io

    row = next(csv.reader([line]))
    row[column] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(row)
    return out.getvalue()


def _cut(line: str, fields: int) -> str:
    import io

    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(next(csv.reader([line]))[:fields])
    return out.getvalue()


def test_the_real_rows_pass(tmp_path):
    truth = load_table(_write(tmp_path, _tss_lines()), "tss")
    assert len(truth.available("cifar10")) == 5


@pytest.mark.parametrize("defect,expect", [
    ("duplicate_index", r"line 3: index 0 is listed twice"),
    ("duplicate_arch", r"line 3: architecture .* is listed twice \(first on line 2\)"),
    ("short_row", r"line 4: short row"),
    ("long_row", r"line 4: .* fields, the header has"),
    ("non_numeric", r"line 5: cifar100 is not a number: 'high'"),
    ("above_100", r"line 5: cifar10 = 100.5 is outside \[0.0, 100.0\]"),
    ("below_0", r"line 5: ImageNet16-120 = -1.0 is outside"),
    ("nan", r"line 5: cifar10 is not finite"),
    ("negative_time", r"line 6: cifar10_train_s_per_epoch = -3.0 is outside \[0.0, inf\]"),
    ("bad_index", r"line 2: index '-1' is not a non-negative integer"),
    ("index_outside", r"line 2: index 15625 is outside the tss space"),
    ("bad_arch", r"line 2: 'x' is not a TSS"),
])
def test_each_table_defect_is_refused_with_file_and_line(tmp_path, defect, expect):
    lines = _tss_lines()  # header + indices 0..4
    if defect == "duplicate_index":
        lines[2] = _set(lines[2], 0, "0")
    elif defect == "duplicate_arch":
        lines[2] = _set(lines[2], 1, next(csv.reader([lines[1]]))[1])
    elif defect == "short_row":
        lines[3] = ",".join(lines[3].split(",")[:4])
    elif defect == "long_row":
        lines[3] = lines[3] + ",7"
    elif defect == "non_numeric":
        lines[4] = _set(lines[4], 3, "high")
    elif defect == "above_100":
        lines[4] = _set(lines[4], 2, "100.5")
    elif defect == "below_0":
        lines[4] = _set(lines[4], 4, "-1")
    elif defect == "nan":
        lines[4] = _set(lines[4], 2, "nan")
    elif defect == "negative_time":
        lines[5] = _set(lines[5], 5, "-3")
    elif defect == "bad_index":
        lines[1] = _set(lines[1], 0, "-1")
    elif defect == "index_outside":
        lines[1] = _set(lines[1], 0, "15625")
    elif defect == "bad_arch":
        lines[1] = _set(lines[1], 1, "x")
    path = _write(tmp_path, lines)
    with pytest.raises(GreenmachineError, match=expect) as info:
        load_table(path, "tss")
    message = str(info.value)
    assert "\n" not in message and str(path) in message


@pytest.mark.parametrize("defect,expect", [
    ("duplicate", r"line 3: cell .* repeat 1 is listed twice \(first on line 2\)"),
    ("accuracy", r"line 2: test_acc_4ep = 1.5 is outside \[0.0, 1.0\]"),
    ("energy", r"line 2: energy_kwh_4ep = -0.01 is outside"),
    ("time", r"line 2: training_time_s_4ep is not a number"),
    ("short", r"line 2: short row"),
    ("hash", r"line 2: the cell's module hash is [0-9a-f]{32}, not"),
    ("params", r"line 2: trainable_params"),
])
def test_each_ecnas_table_defect_is_refused_with_file_and_line(tmp_path, defect, expect):
    from greenmachine.spaces import get_space

    lines = ECNAS_5V.read_text().splitlines()[:4]
    header = next(csv.reader([lines[0]]))
    col = header.index
    if defect == "duplicate":
        lines[2] = lines[1]
    elif defect == "accuracy":
        lines[1] = _set(lines[1], col("test_acc_4ep"), "1.5")
    elif defect == "energy":
        lines[1] = _set(lines[1], col("energy_kwh_4ep"), "-0.01")
    elif defect == "time":
        lines[1] = _set(lines[1], col("training_time_s_4ep"), "fast")
    elif defect == "short":
        lines[1] = _cut(lines[1], 5)
    elif defect == "hash":
        other = next(csv.reader([lines[2]]))[0]
        lines[1] = _set(lines[1], col("module_hash"), other)
    elif defect == "params":
        lines[1] = _set(lines[1], col("trainable_params"), "12.5")
    path = _write(tmp_path, lines)
    with pytest.raises(GreenmachineError, match=expect) as info:
        get_space("ecnas-5v").load_truth(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


class _Boom:
    """Unpickling this runs a command (``os.system``), as a planted file would."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _copy_official(tmp_path):
    target = tmp_path / TSS_OFFICIAL.name
    shutil.copytree(TSS_OFFICIAL, target)
    return target


@pytest.mark.parametrize("which", ["record", "meta"])
def test_a_planted_pickle_in_an_official_directory_runs_nothing(tmp_path, which):
    official = _copy_official(tmp_path)
    marker = tmp_path / "pwned"
    name = "000011.pickle.pbz2" if which == "record" else "meta.pickle.pbz2"
    with bz2.open(official / name, "wb") as f:
        pickle.dump({"200": _Boom(marker)} if which == "record" else {"meta_archs": _Boom(marker)}, f)
    with pytest.raises(GreenmachineError, match=r"refused to read .*posix.system|refused to read .*os.system") as info:
        load_official(official, "tss")
    assert name in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def test_the_cli_refuses_a_planted_official_directory_with_one_line(tmp_path):
    official = _copy_official(tmp_path)
    marker = tmp_path / "pwned"
    with bz2.open(official / "000284.pickle.pbz2", "wb") as f:
        pickle.dump({"200": _Boom(marker)}, f)
    proc = subprocess.run(
        [sys.executable, "-m", "greenmachine", "truth", "export", "--space", "tss", "--official", str(official),
         "--out", str(tmp_path / "out.csv"), "--quiet"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: refused to read NATS-Bench record") and proc.stderr.count("\n") == 1
    assert not marker.exists() and not (tmp_path / "out.csv").exists()


def test_the_real_official_records_still_read(tmp_path):
    truth = load_official(_copy_official(tmp_path), "tss")
    assert sorted(truth.available("cifar10")) == [0, 11, 284]
