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
