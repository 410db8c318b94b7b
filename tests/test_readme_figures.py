"""``make readme-figures``: parsing what the quoted commands print and rewriting the README between markers.
No real run here (hours of CPU): the outputs below are what the commands print, and one tiny process checks the
wall-time and peak-memory measurement."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from greenmachine import readme_figures as rf
from greenmachine.errors import GreenmachineError

ROOT = Path(__file__).resolve().parents[1]

EVOLVE_OUT = """\
        greenmachine evolve: tss / cifar10
┌─────────────────────────────────────┬────────────────────────────────────────┐
│ best Kendall tau (evolution sample) │ 0.8246                                 │
│ best proxy                          │ mul(log(w_mean_layers(w_std(synflow_g… │
└─────────────────────────────────────┴────────────────────────────────────────┘
best_kendall_tau=0.8246
energy: probing 200 networks: 2.1 kJ (estimated, CPU) | run: 2.9 kJ, 0.6 gCO2eq
energy_joules=2912.4 source=estimate estimated=true co2eq_g=0.6 training_kwh_avoided=50.1
best_expression=mul(log(w_mean_layers(w_std(synflow_grad))), a_sum_layers(e_min(corr_eig)))
proxy=runs/demo/proxy.json
"""
EVOLVE_LOG = """2026-11-30 10:00:00,000 sample of 200 tss architectures (stratified, seed 0): probing
2026-11-30 10:00:01,000 probing networks: 20/200 (10%), 1.05 s each, elapsed 0:21, ETA 3:09
2026-11-30 10:03:06,000 probed in 186.0 s; terminals take 2100.5 MB
"""
SCORE_OUT = "architectures=500 space=tss dataset=cifar10\nkendall_tau=0.7561\nspearman_rho=0.9102\n" \
            "seconds_per_network=0.646\n"
BENCH_OUT = """\
device=cpu threads=2 space=tss dataset=cifar10 networks=20 batch=64
probe_seconds_per_network mean=1.680 median=1.702 max=2.377 (wall 34.1 s for 20)
probe_joules_per_network mean=12.41 median=12.00 max=20.02 (total 248.2 J; rapl: ok)
forward_backward_seconds_per_network mean=0.808
probe_to_forward_backward_ratio=2.08
probe_megabytes_per_network mean=10.6 max=25.4
tree_evaluations_per_second=31.1 (on 20 cached networks, 621 network-scores/s)
device=cpu threads=2 space=sss dataset=cifar10 networks=20 batch=64
probe_seconds_per_network mean=0.910 median=0.800 max=1.500 (wall 19.0 s for 20)
probe_to_forward_backward_ratio=1.47
tree_evaluations_per_second=52.5 (on 20 cached networks, 1050 network-scores/s)
"""
PYTEST_OUT = "....................\n" \
             "231 passed, 2 deselected in 98.12s (0:01:38)\n"

FIXTURE = """\
# tool

Intro text that stays; `<!-- figures:NAME -->` in prose is no marker.

<!-- figures:default-run -->
| old | table |
<!-- /figures:default-run -->

Between the blocks: stays too.

<!-- figures:bench -->
old bench
<!-- /figures:bench -->

<!-- figures:tests -->
old tests
<!-- /figures:tests -->

<!-- figures:baselines -->
old baselines, nothing regenerates them in this record
<!-- /figures:baselines -->
"""


def _run(command, stdout, extra, wall=275.0, rss=6.5, code=0):
    return {"command": command, "returncode": code, "wall_seconds": wall, "peak_rss_gb": rss, "stdout": stdout,
            "stderr_tail": "", "started": "2026-11-30 10:00 UTC", "load_before": [2.0, 1.0, 0.5], "extra": extra}


@pytest.fixture()
def record():
    evolve = {**rf.parse_key_values(EVOLVE_OUT), **rf.parse_probe_log(EVOLVE_LOG), "sample_size": 200,
              "sampling": "stratified"}
    bench = {"spaces": rf.bench_sections(BENCH_OUT)}
    return {
        "machine": {"cpu": "AMD EPYC 7B13", "cores": 2, "usable_cores": 2, "memory_gb": 31.3, "python": "3.11.9",
                    "threads": "2"},
        "load_before": [0.05, 0.12, 0.30],
        "runs": {
            "evolve": _run(rf.EVOLVE, EVOLVE_OUT, evolve),
            "score": _run(rf.SCORE, SCORE_OUT, rf.parse_key_values(SCORE_OUT), wall=323.0, rss=1.64),
            "bench": _run(rf.BENCH, BENCH_OUT, bench, wall=80.0, rss=0.9),
            "tests": _run(rf.TESTS, PYTEST_OUT, rf.parse_pytest_summary(PYTEST_OUT), wall=104.0, rss=2.0),
        },
    }


def test_parsing_what_the_commands_print():
    kv = rf.parse_key_values(EVOLVE_OUT)
    assert kv["best_kendall_tau"] == 0.8246
    assert kv["best_expression"] == "mul(log(w_mean_layers(w_std(synflow_grad))), a_sum_layers(e_min(corr_eig)))"
    assert rf.parse_probe_log(EVOLVE_LOG) == {"probe_seconds": 186.0, "terminals_mb": 2100.5}
    assert rf.parse_probe_log("nothing here") == {}
    sections = rf.bench_sections("make: entering\n" + BENCH_OUT)  # one section per space, in order
    assert list(sections) == ["tss", "sss"]
    bench = sections["tss"]
    assert bench["probe_seconds_per_network.mean"] == 1.68 and bench["probe_seconds_per_network.max"] == 2.377
    assert bench["probe_to_forward_backward_ratio"] == 2.08 and bench["tree_evaluations_per_second"] == 31.1
    assert bench["threads"] == 2.0 and bench["device"] == "cpu"
    assert bench["_head"].startswith("device=cpu threads=2 space=tss")
    assert sections["sss"]["probe_to_forward_backward_ratio"] == 1.47 and "tree_evaluations_per_second" in sections["sss"]
    assert "probe_joules_per_network.mean" not in sections["sss"]
    assert rf.parse_pytest_summary(PYTEST_OUT) == {"counts": {"passed": 231, "deselected": 2}, "seconds": 98.12}
    assert rf.parse_pytest_summary("= 3 failed, 10 passed in 5.00s =")["counts"] == {"failed": 3, "passed": 10}
    assert rf.duration(275) == "4 min 35 s" and rf.duration(3.25) == "3.2 s" and rf.duration(4000) == "1 h 6 min"


def test_rewriting_replaces_only_the_blocks_it_has_figures_for(record):
    text, done = rf.rewrite_readme(FIXTURE, record)
    assert done == ["default-run", "bench", "tests"]
    assert "| old | table |" not in text and "old bench" not in text and "old tests" not in text
    assert "old baselines, nothing regenerates them" in text  # no baselines run in the record: left alone
    assert text.startswith("# tool\n\nIntro text that stays; `<!-- figures:NAME -->` in prose is no marker.\n")
    assert "Between the blocks: stays too." in text
    assert "`.venv/bin/greenmachine evolve --space tss --dataset cifar10 --out runs/demo`" in text
    assert "4 min 35 s wall (probing 3 min 6 s), 6.5 GB peak RSS, terminals 2.1 GB" in text
    assert "| its fitness (200 stratified archs) | same | Kendall tau 0.8246 |" in text and "**Kendall tau 0.756**, Spearman rho 0.910 (5 min 23 s, 1.6 GB peak)" in text
    assert "| energy of the evolution, as its summary states | same | 2912 J (source: estimate) |" in text
    assert "energy of the held-out score" not in text  # its output had no energy line
    assert "\n```\nmul(log(w_mean_layers(w_std(synflow_grad))), a_sum_layers(e_min(corr_eig)))\n```" in text
    assert "| probe seconds per network (all passes) | mean 1.680, median 1.702, max 2.377 |" in text
    assert "| quantity | tss | sss |" in text and "| probe / forward+backward | 2.08 | 1.47 |" in text
    assert "`make test` passed: 231 passed, 2 deselected in 1 min 44 s wall" in text
    # every block says on what machine and how busy it was
    assert text.count("AMD EPYC 7B13, 2 cores, 31 GB") == 3
    assert "load average before the run 0.05 / 0.12 / 0.30 (1 / 5 / 15 min): idle" in text
    # markers survive, and a second run over the result changes nothing
    assert rf.block_names(text) == rf.block_names(FIXTURE)
    assert rf.rewrite_readme(text, record)[0] == text


def test_a_busy_machine_is_said_so(record):
    record["load_before"] = [1.9, 1.5, 1.0]
    text, _ = rf.rewrite_readme(FIXTURE, record)
    assert "1.90 / 1.50 / 1.00 (1 / 5 / 15 min): NOT idle" in text


def test_baselines_table(record):
    record["runs"]["baselines"] = _run(rf.BASELINES, "", {"architectures": 500, "proxies": [
        {"name": "evolved_demo", "kind": "evolved", "kendall_tau": 0.7561, "spearman_rho": 0.91, "valid": 500,
         "seconds_per_network": 0.02},
        {"name": "jacov", "kind": "baseline", "kendall_tau": 0.515, "spearman_rho": 0.682, "valid": 489,
         "seconds_per_network": 0.48},
        {"name": "broken", "kind": "baseline", "kendall_tau": None, "spearman_rho": None, "valid": 0,
         "seconds_per_network": 0.1}]}, wall=2377.0, rss=2.5)
    text, done = rf.rewrite_readme(FIXTURE, record)
    assert "baselines" in done and "--include runs/demo/proxy.json" in text
    assert "| evolved_demo | evolved | **0.756** | 0.910 | 500 / 500 | 0.020 |" in text
    assert "| jacov | baseline | 0.515 | 0.682 | 489 / 500 | 0.480 |" in text
    assert "| broken | baseline | — | — | 0 / 500 | 0.100 |" in text and "(39 min 37 s wall, 2.5 GB peak.)" in text


def test_every_step_has_its_quoted_command():
    assert set(rf.QUOTED) == set(rf.STEPS)


def test_sss_default_run_block(record):
    out = EVOLVE_OUT.replace("tss / cifar10", "sss / cifar10").replace("runs/demo/", "runs/demo-sss/")
    sss = {**rf.parse_key_values(out), **rf.parse_probe_log(EVOLVE_LOG), "sample_size": 200, "sampling": "stratified"}
    record["runs"]["evolve-sss"] = _run(rf.EVOLVE_SSS, out, sss, wall=745.0, rss=3.1)
    readme = FIXTURE + "\n<!-- figures:sss-default-run -->\nold\n<!-- /figures:sss-default-run -->\n"
    text, done = rf.rewrite_readme(readme, record)
    assert done == ["default-run", "bench", "tests", "sss-default-run"]
    block = text.split("<!-- figures:sss-default-run -->")[1]
    assert "`.venv/bin/greenmachine evolve --space sss --dataset cifar10 --out runs/demo-sss`" in block
    assert "| 12 min 25 s wall (probing 3 min 6 s), 3.1 GB peak RSS, terminals 2.1 GB |" in block
    assert "| its fitness (200 stratified archs) | same | Kendall tau 0.8246 |" in block
    assert "| energy of the evolution, as its summary states | same | 2912 J (source: estimate) |" in block
    assert "`runs/demo-sss/proxy.json`" in block and "AMD EPYC 7B13" in block and "\nold\n" not in block
    del record["runs"]["evolve-sss"]  # a record without the step leaves the block as it is
    assert "<!-- figures:sss-default-run -->\nold\n" in rf.rewrite_readme(readme, record)[0]


@pytest.mark.parametrize("readme,match", [
    ("<!-- figures:bench -->\nx\n", "exactly one"),
    ("<!-- figures:bench -->\n<!-- /figures:bench -->\n<!-- figures:bench -->\n<!-- /figures:bench -->\n", "exactly one"),
    ("<!-- /figures:bench -->\n<!-- figures:bench -->\n", "before its opening"),
    ("<!-- figures:nobody -->\n<!-- /figures:nobody -->\n", "nothing generates"),
    ("<!-- figures:bench -->\nx\nsee `<!-- /figures:bench -->` inline\n", "exactly one"),
])
def test_broken_markers_are_refused(record, readme, match):
    with pytest.raises(GreenmachineError, match=match):
        rf.rewrite_readme(readme, record)


def test_the_readme_blocks_are_all_generated():
    """The real README: every block is well formed and has a generator, and the figures it quotes are there."""
    text = (ROOT / "README.md").read_text()
    names = rf.block_names(text)
    assert {"default-run", "bench", "tests"} <= set(names)
    for name in names:
        rf.replace_block(text, name, "")
        assert name in rf.RENDERERS
    assert "make readme-figures" in text


def test_from_record_end_to_end(tmp_path, record, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(FIXTURE)
    saved = tmp_path / "figures.json"
    saved.write_text(json.dumps(record))
    rf.main(["--readme", str(readme), "--from-record", str(saved)], standalone_mode=False)
    assert "rewrote default-run, bench, tests" in capsys.readouterr().out
    assert "Kendall tau 0.8246" in readme.read_text()


def test_bad_steps_and_foreign_work_folders_are_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(FIXTURE)
    with pytest.raises(GreenmachineError, match="unknown step"):
        rf.main(["--readme", str(readme), "--steps", "bench,nonsense"], standalone_mode=False)
    with pytest.raises(GreenmachineError, match="add evolve"):
        rf.main(["--readme", str(readme), "--steps", "score"], standalone_mode=False)
    work = tmp_path / "mine"
    work.mkdir()
    (work / "precious.txt").write_text("keep")
    with pytest.raises(GreenmachineError, match="did not make"):
        rf.main(["--readme", str(readme), "--steps", "bench", "--work", str(work)], standalone_mode=False)
    assert (work / "precious.txt").read_text() == "keep"


def test_wall_time_and_peak_memory_of_a_process(tmp_path):
    """A child that holds ~150 MB for a moment, started while this process holds ~400 MB more: the peak RSS is the
    child's, not ours (a child forked from a big parent starts with the parent's high-water mark)."""
    ballast = bytearray(400 * 1024 * 1024)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touched: resident
    code = "import time; b = bytearray(150 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.3); print('ok=1')"
    run = rf.run_measured(["python", "-c", "..."], [sys.executable, "-c", code], tmp_path, {})
    del ballast
    assert run.returncode == 0 and run.stdout.strip() == "ok=1"
    assert 0.14 <= run.peak_rss_gb <= 0.35 and run.wall_seconds >= 0.3
    assert not list(tmp_path.iterdir())  # its output files are cleaned up
    failing = rf.run_measured(["false"], [sys.executable, "-c", "import sys; sys.exit(3)"], tmp_path, {})
    assert failing.returncode == 3
    assert rf.run_measured(["nothing"], [str(tmp_path / "no-such-program")], tmp_path, {}).returncode == 127


def test_waiting_for_an_idle_machine(monkeypatch):
    loads = iter([(1.5, 1, 1), (0.9, 1, 1), (0.1, 1, 1)])
    monkeypatch.setattr(rf, "load_average", lambda: next(loads))
    slept = []
    assert rf.wait_for_idle(10, sleep=slept.append) is True and len(slept) == 2
    monkeypatch.setattr(rf, "load_average", lambda: (3.0, 3, 3))
    t = [0.0]
    assert rf.wait_for_idle(1, poll_seconds=20, sleep=lambda s: t.__setitem__(0, t[0] + s), clock=lambda: t[0]) is False
    assert t[0] == 60.0  # gave up after the minute it was given


def test_energy_block(record):
    line = ("energy: probing 50 networks: 540 J (estimated, CPU) | run: 552 J, 0.114 gCO2eq | training them: "
            "12.8 kWh | 1 : 83,257")
    out = f"architectures=50 space=tss dataset=cifar10\nkendall_tau=0.5612\n{line}\nenergy_joules=552.0 source=estimate\n"
    block = {"joules": 552.0, "source": "estimate", "per_network_j": 10.8, "training_method":
             "cifar10_train_s_per_epoch x 200 epochs x 250 W", "meter": {"cpu_seconds": 46.0, "cpu_watts_per_core": 12.0}}
    record["runs"]["energy"] = _run(rf.ENERGY, out, {**rf.parse_key_values(out), "energy": block}, wall=60.0, rss=0.8)
    readme = FIXTURE + "\n<!-- figures:energy -->\nold\n<!-- /figures:energy -->\n"
    text, done = rf.rewrite_readme(readme, record)
    assert "energy" in done and "\nold\n" not in text
    assert ("echo '{\"format\": \"greenmachine-proxy\", \"format_version\": 1, \"expression\": "
            "\"k_logdet_sum(relu_kernel)\", \"space\": \"tss\", \"dataset\": \"cifar10\"}' > naswot.json") in text
    assert ("GREENMACHINE_THREADS=1 .venv/bin/greenmachine score naswot.json --sample-size 50 --no-cache "
            "--out scores.csv") in text
    assert f"```\n{line}\n```" in text
    assert ("(10.8 J per network probed; source `estimate`; 46 s of CPU time x 12 W; training: "
            "cifar10_train_s_per_epoch x 200 epochs x 250 W.)") in text
