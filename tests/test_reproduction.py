"""The reproduction path of the Makefile: reproduce (evolve, held-out score, baselines) then the markdown table."""

import json

import pytest

from greenmachine.cli import main


@pytest.mark.slow  # minutes on a loaded 2-core machine: `make test-slow`
def test_reproduce_then_report(tmp_path, capsys, env):
    config = tmp_path / "tss-cifar10-stratified.toml"
    config.write_text(
        'space = "tss"\ndataset = "cifar10"\nsampling = "stratified"\nsample_size = 10\npopulation = 6\n'
        'generations = 1\nbatch_size = 16\nstrata = 5\neval_sample_size = 6\neval_sampling = "random"\n'
        "eval_baselines = true\n"
    )
    run = tmp_path / "runs" / "tss-cifar10-stratified"
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "--config", str(config), "--out", str(run), "--quiet"])
    assert exc.value.code == 0
    assert "kendall_tau=" in capsys.readouterr().out
    held_out = json.loads((run / "scores.summary.json").read_text())
    evolution = set(json.loads((run / "proxy.json").read_text())["sample_indices"])
    assert held_out["architectures"] == 6
    baselines = json.loads((run / "baselines.summary.json").read_text())
    assert {p["name"] for p in baselines["proxies"]} >= {"naswot", "synflow", "params", "evolved"}
    import csv

    rows = list(csv.DictReader(open(run / "baselines.csv")))
    assert not evolution & {int(r["index"]) for r in rows}  # held out, and the same networks as scores.csv
    assert {int(r["index"]) for r in rows} == {int(r["index"]) for r in csv.DictReader(open(run / "scores.csv"))}

    table = tmp_path / "results" / "reproduction.md"
    with pytest.raises(SystemExit) as exc:
        main(["report", str(run), "--out", str(table)])
    assert exc.value.code == 0
    text = table.read_text()
    assert "| tss | cifar10 | stratified | 10 |" in text and "0.780" in text and "best baseline:" in text
    # a second call resumes the finished run instead of failing on the existing checkpoint
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "--config", str(config), "--out", str(run), "--quiet"])
    assert exc.value.code == 0
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path / "missing"), "--out", str(table)])
    assert exc.value.code == 2


def test_gpu_script_configs_are_valid(tmp_path):
    """scripts/gpu-published-sss.sh writes its own smoke config and a CPU fallback of the published configs: both
    must stay loadable as the config schema moves (the script itself only runs on a lent GPU)."""
    import re
    import subprocess
    from pathlib import Path

    from greenmachine.config import load_config

    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu-published-sss.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    smoke = re.search(r"<<'TOML'\n(.*?)\nTOML\n", text, re.S).group(1)
    (tmp_path / "smoke.toml").write_text(smoke + "\n")
    config = load_config(tmp_path / "smoke.toml").validate()
    assert (config.space, config.device, config.eval_sampling) == ("sss", "cuda", "stratified")
    for setting in ("sss-cifar10-stratified", "sss-cifar100-stratified"):
        assert setting in text
        published = (script.parents[1] / "configs" / f"{setting}.toml").read_text()
        fallback = re.sub(r'(?m)^device = .*$', 'device = "cpu"', published) + 'workers = 7\nexecutor = "process"\n'
        (tmp_path / f"{setting}.toml").write_text(fallback)
        cpu = load_config(tmp_path / f"{setting}.toml").validate()
        assert (cpu.device, cpu.workers, cpu.executor, cpu.population) == ("cpu", 7, "process", 200)
