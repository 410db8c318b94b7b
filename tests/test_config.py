"""Configs: every shipped file loads and validates; bad settings fail with a clear message."""

from pathlib import Path

import pytest

from greenmachine.config import EvolveConfig, load_config
from greenmachine.errors import GreenmachineError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))


def test_there_is_a_default_and_eight_published_settings():
    names = {p.stem for p in CONFIGS}
    assert "default" in names
    for space in ("tss", "sss"):
        for ds in ("cifar10", "cifar100"):
            for sampling in ("stratified", "random"):
                assert f"{space}-{ds}-{sampling}" in names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_validate(path):
    cfg = load_config(path).validate()
    if path.stem != "default":
        space, ds, sampling = path.stem.split("-")
        assert (cfg.space, cfg.dataset, cfg.sampling) == (space, ds, sampling)


def test_default_file_matches_dataclass_defaults():
    assert load_config(Path(CONFIGS[0]).parent / "default.toml") == EvolveConfig()


def test_bad_configs(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("populaton = 3\n")
    with pytest.raises(GreenmachineError, match="unknown setting"):
        load_config(p)
    p.write_text("population = 'many'\n")
    with pytest.raises(GreenmachineError, match="must be int"):
        load_config(p)
    p.write_text("population = [\n")
    with pytest.raises(GreenmachineError, match="not valid TOML"):
        load_config(p)
    with pytest.raises(GreenmachineError, match="not found"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(GreenmachineError, match="crossover_prob"):
        EvolveConfig(crossover_prob=2.0).validate()


def test_structural_terminals_are_on_in_the_sss_defaults_only(tmp_path):
    sss, tss = load_config(None, space="sss"), load_config(None, space="tss")
    assert sss == EvolveConfig(structural=True)  # the package budget; only the language differs
    assert not tss.structural and tss == EvolveConfig()
    p = tmp_path / "c.toml"
    p.write_text("space = 'sss'\nstructural = false\n")
    assert load_config(p).structural is False  # a file overrides the space's defaults
    p.write_text("structural = 'yes'\n")
    with pytest.raises(GreenmachineError, match="structural must be bool"):
        load_config(p)
    for path in CONFIGS:  # the published SSS settings keep their own budget and get the terminals
        cfg = load_config(path)
        assert cfg.structural == (cfg.space == "sss")


def test_the_toolbox_draws_structural_terminals_only_when_asked():
    import random

    from greenmachine.executor import SerialExecutor
    from greenmachine.proxies.primitives import STRUCTURAL
    from greenmachine.search.proxy_gp import make_toolbox

    for structural in (False, True):
        tb = make_toolbox(EvolveConfig(structural=structural), lambda ind: (0.0,), SerialExecutor())
        random.seed(0)
        drawn = {node.name for _ in range(400) for node in tb.expr()}
        assert bool(set(STRUCTURAL) & drawn) == structural
