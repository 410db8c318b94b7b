# greenmachine: `make install`, then `make test`. See README.md.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
GM     := $(BIN)/greenmachine
export GREENMACHINE_DATA ?= $(abspath ../shared/data)

SETTINGS := tss-cifar10-stratified tss-cifar100-stratified sss-cifar10-stratified sss-cifar100-stratified \
            tss-cifar10-random tss-cifar100-random sss-cifar10-random sss-cifar100-random

.PHONY: install test test-fast bench demo reproduce table clean $(addprefix reproduce-,$(SETTINGS))

install: $(VENV)/.installed

# torch is pinned (a CPU build lies on disk; unpinned pulls CUDA). xautodl 1.0.0 declares numpy<=1.19.5, which
# cannot be resolved with the rest: it goes in with --no-deps (its model code needs nothing more).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps xautodl==1.0.0
	touch $@

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m greenmachine.bench --networks 20

# The default run of the README: evolve on TSS / CIFAR-10, then score on 500 held-out random architectures.
demo: install
	$(GM) evolve --space tss --dataset cifar10 --out runs/demo $(if $(wildcard runs/demo/checkpoint.json),--resume)
	$(GM) score runs/demo/proxy.json --sample-size 500 --exclude-evolution-sample --out runs/demo/scores.csv

# One target per published setting (configs/<setting>.toml): evolve, then score on a disjoint sample.
$(addprefix reproduce-,$(SETTINGS)): reproduce-%: install
	$(GM) reproduce --config configs/$*.toml --out runs/$*

reproduce: $(addprefix reproduce-,$(SETTINGS)) table

table: install
	$(GM) report $(wildcard $(addprefix runs/,$(SETTINGS))) --out results/reproduction.md

clean:
	rm -rf runs results .pytest_cache
