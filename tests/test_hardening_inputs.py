"""User errors are user errors: every input below ends in one ``error:`` line and exit code 2 (not ``internal
error`` with 1, not a hang, not ``tau=nan`` with 0). CLI via ``main([...])`` on the real data."""

from __future__ import annotations

import json
import os
import signal

import pytest

from greenmachine import config as config_module
from greenmachine.cli import main

PROXY = {"format": "greenmachine-proxy", "format_version": 1, "expression": "k_logdet_sum(relu_kernel)",
         "space": "tss", "dataset": "cifar10", "probe": {"batch_size": 8, "batch_seed": 0, "init_seed": 0}}
# whatever a case would run on code without the check is kept small: two networks, 8 images, no generations
SMALL_EVOLVE = ["--generations", "0", "--sample-size", "4", "--population", "2", "--batch-size", "8", "--quiet"]


def gm(capsys, *args):
    def timeout(*_):
        raise TimeoutError("the command blocked")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(60)  # a FIFO read on code without the check would block forever
    try:
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in args])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def assert_user_error(code, err, *parts):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "internal error" not in lines[0], err
    for part in parts:
        assert part in lines[0], (part, lines[0])


def proxy_file(tmp_path, name="p.json", **changes):
    data = {**PROXY, **changes}
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def tall(height: int) -> str:
    """``a_sum_layers(al_neg(...(al_one)))`` of the given height (a terminal alone is height 0, as in DEAP)."""
    expr = "al_one"
    for _ in range(height - 1):
        expr = f"al_neg({expr})"
    return f"a_sum_layers({expr})"


# ---- seeds -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["evolve", "--seed", "-1"],
        ["evolve", "--seed", str(2**32)],
        ["score", "{proxy}", "--seed", "-5"],
        ["baselines", "--probe-seed", "-1", "--archs", "3,17"],
        ["baselines", "--probe-seed", str(2**64), "--archs", "3,17"],
    ],
)
def test_negative_or_huge_seeds_state_the_range(tmp_path, capsys, env, args):
    proxy = proxy_file(tmp_path)
    args = [a.format(proxy=proxy) for a in args]
    if args[0] == "evolve":
        args += ["--out", str(tmp_path / "run"), *SMALL_EVOLVE]
    code, _, err = gm(capsys, *args, "--quiet")
    assert_user_error(code, err, "4294967295")


def test_the_cli_seed_range_is_the_config_seed_range():
    from greenmachine.cli import SEED

    assert (SEED.min, SEED.max) == (0, config_module.SEED_MAX) == (0, 2**32 - 1)


@pytest.mark.parametrize("field,value", [("seed", -1), ("seed", 2**40)])
def test_config_seeds_out_of_range(tmp_path, capsys, env, field, value):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"{field} = {value}\n")
    code, _, err = gm(capsys, "evolve", "--config", cfg, "--out", tmp_path / "run", *SMALL_EVOLVE)
    assert_user_error(code, err, "4294967295")


@pytest.mark.parametrize("field", ["batch_seed", "init_seed"])
def test_proxy_probe_seeds_out_of_range(tmp_path, capsys, env, field):
    proxy = proxy_file(tmp_path, probe={"batch_size": 8, "batch_seed": 0, "init_seed": 0, field: -3})
    code, _, err = gm(capsys, "score", proxy, "--archs", "3,17", "--quiet")
    assert_user_error(code, err, str(proxy), field, "4294967295")


# ---- proxy files -------------------------------------------------------------------------------------------------


def test_json_nested_too_deep(tmp_path, capsys, env):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = gm(capsys, "score", path, "--archs", "3,17", "--quiet")
    assert_user_error(code, err, str(path), "deeper than")


@pytest.mark.parametrize("form", ["expression", "tokens"])
def test_tree_higher_than_the_documented_limit(tmp_path, capsys, env, form):
    from greenmachine.proxies.primitives import parse_expression

    limit = config_module.MAX_TREE_HEIGHT
    assert limit == 17
    expression = tall(limit + 1)
    base = {k: v for k, v in PROXY.items() if k != "expression"}
    data = {"expression": expression} if form == "expression" else {"tokens": parse_expression(expression)}
    path = tmp_path / "tall.json"
    path.write_text(json.dumps({**base, **data}))
    code, _, err = gm(capsys, "score", path, "--archs", "3,17", "--quiet")
    assert_user_error(code, err, str(path), "18 levels", "17")
    # thousands of levels: refused before any recursive walk of the tree (once a RecursionError)
    deep = ["a_sum_layers"] + ["al_neg"] * 5000 + ["al_one"]
    path.write_text(json.dumps({**base, "tokens": deep}))
    code, _, err = gm(capsys, "score", path, "--archs", "3,17", "--quiet")
    assert_user_error(code, err, str(path), "5001 levels")


def test_a_tree_at_the_limit_is_accepted():
    from greenmachine.proxies.proxyfile import proxy_from_json

    proxy = proxy_from_json({**PROXY, "expression": tall(config_module.MAX_TREE_HEIGHT)}, "p.json")
    assert len(proxy.tokens) == config_module.MAX_TREE_HEIGHT + 1
    with pytest.raises(Exception):
        proxy_from_json({**PROXY, "expression": tall(config_module.MAX_TREE_HEIGHT + 1)}, "p.json")


@pytest.mark.parametrize("dataset", [5, "mnist", ["cifar10"]])
def test_bad_dataset_field_in_a_proxy(tmp_path, capsys, env, dataset):
    proxy = proxy_file(tmp_path, dataset=dataset)
    code, _, err = gm(capsys, "score", proxy, "--archs", "3,17", "--quiet")
    assert_user_error(code, err, str(proxy), "dataset")


def test_fifo_as_proxy_path_is_refused_without_blocking(tmp_path, capsys, env):
    fifo = tmp_path / "proxy.json"
    os.mkfifo(fifo)
    code, _, err = gm(capsys, "score", fifo, "--archs", "3,17", "--quiet")
    assert_user_error(code, err, str(fifo), "not a regular file")
    code, _, err = gm(capsys, "baselines", "--include", fifo, "--archs", "3,17", "--quiet")
    assert_user_error(code, err, str(fifo), "not a regular file")


def test_fifo_as_config_is_refused_without_blocking(tmp_path, capsys, env):
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    code, _, err = gm(capsys, "evolve", "--config", fifo, "--out", tmp_path / "run", *SMALL_EVOLVE)
    assert_user_error(code, err, str(fifo), "not a regular file")


def test_proxy_file_larger_than_the_limit(tmp_path, capsys, env):
    from greenmachine.proxies.proxyfile import MAX_PROXY_BYTES

    assert MAX_PROXY_BYTES == 1 << 20
    path = tmp_path / "big.json"
    path.write_text(json.dumps({**PROXY, "padding": "x" * MAX_PROXY_BYTES}))  # valid JSON, just too large
    code, _, err = gm(capsys, "score", path, "--archs", "3,17", "--quiet")
    assert_user_error(code, err, str(path), "limit is 1048576 bytes")


# ---- configs -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,message",
    [
        ("evolve = 5\n", "table"),
        ("max_height = 18\ninit_max_depth = 5\n", "at most 17"),
        ("max_height = 200\ninit_max_depth = 150\n", "at most 17"),
        ("workers = 257\n", "at most 256"),
        ("eval_sample_size = 1\n", "at least 2"),
        ("seed = 1\n[evolve]\npopulation = 4\n", "beside the [evolve] table"),
    ],
)
def test_config_limits_and_types(tmp_path, capsys, env, text, message):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    code, _, err = gm(capsys, "evolve", "--config", cfg, "--out", tmp_path / "run", *SMALL_EVOLVE)
    assert_user_error(code, err, message)


def test_config_larger_than_the_limit(tmp_path, capsys, env):
    cfg = tmp_path / "c.toml"
    cfg.write_text("# padding\n" * 200_000 + "population = 4\n")
    code, _, err = gm(capsys, "evolve", "--config", cfg, "--out", tmp_path / "run", *SMALL_EVOLVE)
    assert_user_error(code, err, str(cfg), "limit")


# ---- --archs -----------------------------------------------------------------------------------------------------


# Arabic-Indic, superscript and fullwidth digits: str.isdigit() is True for all, and int() takes two of them
@pytest.mark.parametrize("archs", ["\u0661\u0662,3", "\u00b9\u00b2,3", "3,\uff11\uff17"])
def test_non_ascii_digits_in_archs(tmp_path, capsys, env, archs):
    proxy = proxy_file(tmp_path)
    code, _, err = gm(capsys, "score", proxy, "--archs", archs, "--quiet")
    assert_user_error(code, err, "--archs", "ASCII")


@pytest.mark.parametrize("command", ["score", "baselines"])
def test_a_single_architecture_says_tau_needs_two(tmp_path, capsys, env, command):
    if command == "score":
        args = ["score", proxy_file(tmp_path)]
    else:
        args = ["baselines", "--proxies", "params", "--batch-size", "8"]
    code, out, err = gm(capsys, *args, "--archs", "0", "--quiet")
    assert_user_error(code, err, "at least two")
    assert "nan" not in out
    code, out, err = gm(capsys, *args, "--sample-size", "1", "--quiet")
    assert_user_error(code, err, "at least 2")


@pytest.mark.parametrize("field,value,message", [("population", 100_001, "at most 100000"),
                                                  ("generations", 100_001, "at most 100000")])
def test_config_sizes_beyond_the_documented_maximum(field, value, message):
    """A population of 10**30 died of MemoryError as an internal error; 10**30 generations grew the history
    without bound. Both are refused by validate(), which evolve and reproduce call before any work."""
    from greenmachine.config import EvolveConfig
    from greenmachine.errors import GreenmachineError

    with pytest.raises(GreenmachineError, match=message):
        EvolveConfig(**{field: value}).validate()
    EvolveConfig(**{field: value - 1}).validate()


def test_proxies_naming_nothing_is_refused(tmp_path, capsys, env):
    code, out, err = gm(capsys, "baselines", "--proxies", ",", "--archs", "3,17", "--batch-size", "8", "--quiet")
    assert_user_error(code, err, "names no proxy")


def test_a_boolean_format_version_is_not_version_1(tmp_path, capsys, env):
    proxy = proxy_file(tmp_path, format_version=True)
    code, _, err = gm(capsys, "score", proxy, "--archs", "3,17", "--quiet")
    assert_user_error(code, err, "format version")
