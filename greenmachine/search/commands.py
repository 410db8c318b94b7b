"""``greenmachine search``: the click command, kept beside the search it drives (``cli.py`` registers it).

Only click is imported at module level: ``greenmachine --help`` must not import torch.
"""

from __future__ import annotations

from pathlib import Path

import click

from greenmachine.errors import GreenmachineError


def _default_out(space: str, dataset: str, objective: str, cost: str, algorithm: str, seeds: str) -> Path:
    name = Path(objective).parent.name or Path(objective).stem if objective.endswith(".json") else objective
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{name}-{cost}-{algorithm}-{seeds}")
    return Path("runs") / f"search-{space}-{dataset}-{safe}"


def _energy_hook(meter, settings, truth, dataset):
    """The energy block (energy/accounting.py) of one seed: joules spent by this seed, training energy avoided
    for the architectures it scored; None when the energy package is absent."""
    if meter is None or settings is None:
        return None
    from greenmachine.energy.accounting import energy_block, training_energy

    def block(search, outcome) -> dict:
        indices = [i for i, _ in search.evaluated]
        training = training_energy(truth, dataset, indices, settings.training_device_w)
        return energy_block(meter, settings, training, "search", len(indices), joules=outcome.totals.joules)

    return block


@click.command("search")
@click.option("--space", default="tss", show_default=True, help="Search space (registry name).")
@click.option("--dataset", default="cifar10", show_default=True)
@click.option("--objective", required=True,
              help="A proxy.json, a baseline name (naswot, synflow, params, ...) or 'accuracy' (the oracle).")
@click.option("--cost", default="train-energy", show_default=True,
              help="train-energy | latency:<device column> | params | flops | energy (EC-NAS measured kWh) | "
                   "energy-predicted (with --energy-model).")
@click.option("--algorithm", type=click.Choice(["nsga2", "random"]), default="nsga2", show_default=True)
@click.option("--budget", type=int, default=1000, show_default=True, help="Distinct architectures scored.")
@click.option("--population", type=int, default=40, show_default=True, help="NSGA-II population (multiple of 4).")
@click.option("--seed", type=int, default=None, help="One seed (default 0).")
@click.option("--seeds", default=None, help="Several seeds, e.g. 0-4: one run each, then mean and std.")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Probe minibatch of baseline objectives.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--workers", type=int, default=1, show_default=True, help="Processes for probing a proxy objective.")
@click.option("--executor", type=click.Choice(["serial", "process", "ray"]), default=None,
              help="Where probing runs (greenmachine/executor.py): default serial for one worker, process for more.")
@click.option("--ray-address", default=None, metavar="ADDRESS",
              help="With --executor ray: join this cluster (auto, HOST:PORT); default a local Ray instance.")
@click.option("--resume", is_flag=True, help="Continue the search (every seed) in --out.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Run folder (default runs/search-<space>-<dataset>-<objective>-...).")
@click.option("--training-device-w", type=float, default=None,
              help="Power of the benchmark's training device behind train-energy (default: the energy default, 250 W).")
@click.option("--energy-model", type=click.Path(dir_okay=False), default=None,
              help="With --cost energy-predicted: an energy surrogate fitted by 'greenmachine energy fit'.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None)
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None)
@click.option("--no-cache", is_flag=True)
@click.option("--quiet", is_flag=True)
def search(space, dataset, objective, cost, algorithm, budget, population, seed, seeds, batch_size, device, workers,
           resume, out_dir, training_device_w, data_dir, cache_dir, no_cache, quiet, executor=None, ray_address=None,
           energy_model=None):
    """Multi-objective architecture search: accurate (by a training-free objective) and cheap (by a cost).

    Writes front.csv, evaluated.csv, summary.json, front.png, history.csv and a checkpoint into --out; with
    --seeds, one folder per seed plus seeds.csv and summary.json (mean, std)."""
    from greenmachine.executor import make_executor
    from greenmachine.probing.cache import open_cache
    from greenmachine.search.architecture import SearchConfig, parse_seeds, run_search, run_seeds
    from greenmachine.spaces import get_space
    from greenmachine.ui import Reporter
    from greenmachine.workspace import load_space_truth, resolve_data_dir

    try:  # GREENMACHINE_THREADS, applied as for every other command
        from greenmachine.cli import _configure_torch
    except ImportError:
        pass
    else:
        _configure_torch()
    if seed is not None and seeds is not None:
        raise GreenmachineError("give --seed or --seeds, not both")
    if workers < 1:
        raise GreenmachineError(f"--workers must be at least 1, got {workers}")
    seed_list = parse_seeds(seeds) if seeds is not None else [0 if seed is None else seed]
    space_obj = get_space(space)
    space_obj.check_dataset(dataset) if hasattr(space_obj, "check_dataset") else None
    config = SearchConfig(space=space, dataset=dataset, objective=objective, cost=cost, algorithm=algorithm,
                          budget=budget, population=population, seed=seed_list[0], batch_size=batch_size,
                          device=device, training_device_w=training_device_w,
                          energy_model=str(Path(energy_model).resolve()) if energy_model else None).validate()
    data = resolve_data_dir(data_dir)
    out = Path(out_dir) if out_dir else _default_out(space, dataset, objective, cost, algorithm,
                                                     seeds or str(seed_list[0]))
    from greenmachine.files import check_writable_dir

    check_writable_dir(out, "--out")  # before the costs over the whole space and any probing, not after
    cache = open_cache(cache_dir, no_cache, data)  # keyed on the digest of the images in this data folder
    meter = settings = None
    try:
        from greenmachine.energy.accounting import EnergySettings
        from greenmachine.energy.meter import make_meter

        settings = EnergySettings(**({"training_device_w": training_device_w} if training_device_w else {})).validate()
        meter = make_meter(device, settings.cpu_watts_per_core)
    except ImportError:
        pass
    reporter = Reporter(quiet=quiet)
    executor = make_executor(workers, executor, ray_address, device)
    try:
        with reporter.session():
            truth = load_space_truth(data, space, reporter)
            energy = _energy_hook(meter, settings, truth, dataset)
            if seeds is not None:
                summary = run_seeds(config, seed_list, truth, data, out, cache=cache, resume=resume,
                                    reporter=reporter, meter=meter, energy=energy, executor=executor)
                rows = summary["per_seed"]
            else:
                result = run_search(config, truth, data, out, cache=cache, resume=resume, reporter=reporter,
                                    meter=meter, energy=energy, executor=executor)
                summary = result.summary
                rows = []
    finally:
        close = getattr(executor, "close", None)
        if close:
            close()
    for r in rows:
        click.echo(f"seed={r['seed']} hv_ratio={_f(r['hv_ratio'])} knee_accuracy={_f(r['knee_accuracy'])} "
                   f"knee_cost={_f(r['knee_cost'])} evaluated={r['evaluated']}")
    if seeds is not None:
        m, s = summary["mean"], summary["std"]
        click.echo(f"hv_ratio_mean={_f(m['hv_ratio'])} hv_ratio_std={_f(s['hv_ratio'])}")
    else:
        knee = summary.get("knee") or {}
        click.echo(f"hv_ratio={_f(summary['hv_ratio'])} hv_found={_f(summary['hv_found'])} "
                   f"hv_true={_f(summary['hv_true'])}")
        click.echo(f"knee={knee.get('arch')} accuracy={_f(knee.get('accuracy'))} cost={_f(knee.get('cost'))} "
                   f"{summary['cost']['unit']}")
        click.echo(f"evaluated={summary['evaluated']} front={summary['front_size']} seconds={summary['seconds']:.1f}")
    click.echo(f"out={out}")


def _f(x) -> str:
    return "nan" if x is None else f"{x:.4g}"
