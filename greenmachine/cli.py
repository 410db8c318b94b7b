"""The ``greenmachine`` command line: a thin layer over the library. Errors end in one line and a non-zero exit."""

from __future__ import annotations

import functools
import contextlib
import inspect
import os
import sys
from pathlib import Path

import click

from greenmachine.errors import GreenmachineError

# No torch (nor numpy-heavy greenmachine module) is imported at the top of this file: `--help` and argument errors
# must answer at once, and torch alone takes seconds to import. Commands import what they use in their bodies.

from greenmachine.spaces import dataset_names, space_names  # the registry: no torch imported

SPACE = click.Choice(space_names())
DATASET = click.Choice(dataset_names())
SAMPLING = click.Choice(["stratified", "random"])
# Seeds are 0..2**32-1 (config.SEED_MAX, kept equal by tests/test_hardening_inputs.py): numpy's generators refuse
# negative seeds and torch's overflow on huge ones, deep inside a run; click states the range at once instead.
SEED = click.IntRange(0, 2**32 - 1)
# initialisations a score averages over (probing.probe.MAX_INITS, kept equal by tests/test_inits.py)
INITS = click.IntRange(1, 32)
INITS_HELP = ("Average every network's score over N initialisations and minibatches (probe seeds S, S+1, ...; "
              "N times the probing).")
SPECTRUM_IMAGES_HELP = ("corr_eig is the mean of the first K images' channel-correlation spectra (MeCo reads the "
                        "first image only); same passes, K eigendecompositions per ReLU input.")


def _common(f):
    f = click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                     help="Data folder (images/, nats/); default $GREENMACHINE_DATA.")(f)
    f = click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                     help="Probe cache; default $GREENMACHINE_CACHE or ~/.cache/greenmachine.")(f)
    f = click.option("--no-cache", is_flag=True, help="Probe every network again; write no cache.")(f)
    f = click.option("--quiet", is_flag=True, help="No progress bars.")(f)
    return f


def _cache(cache_dir, no_cache, data_dir=None):
    """The probe cache (``data_dir`` keys its entries on the digest of the images actually probed)."""
    from greenmachine.probing.cache import open_cache

    return open_cache(cache_dir, no_cache, data_dir)


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def _run_name(path: Path, taken, prefix: str = "") -> str:
    """What a proxy file is called in tables: its run folder for ``<run>/proxy.json``, else the file's stem, after
    ``prefix``; ``_`` is appended until no name in ``taken`` has it."""
    name = prefix + (path.parent.name if path.stem == "proxy" and path.parent.name else path.stem)
    while name in taken:
        name += "_"
    return name


def _check_outputs(out_path, outputs: dict[str, Path], inputs=()) -> None:
    """Before any work: the result files of ``--out`` (CSV and its twins) are distinct, overwrite no input file,
    and can be written. Why: an hour of probing must not end in a traceback, nor in a result replacing a proxy."""
    from greenmachine.files import check_writable_file

    seen: dict[Path, str] = {}
    for what, path in outputs.items():
        resolved = path.resolve()
        if resolved in seen:
            raise GreenmachineError(f"--out {out_path}: its {what} and its {seen[resolved]} would be the same file "
                                    f"{path}; choose a name ending in .csv")
        seen[resolved] = what
        for inp in inputs:
            if _same_file(path, Path(inp)):
                raise GreenmachineError(f"--out {out_path} would overwrite the input proxy file {inp} (as its {what})")
        check_writable_file(path, f"--out ({what})")


def _energy_options(f):
    """--carbon-intensity, --pue, --training-device-w, --cpu-watts-per-core (defaults and sources: energy/)."""
    f = click.option("--cpu-watts-per-core", type=float, default=None,
                     help="Power per busy core for the CPU-time estimate when no NVML/RAPL counter is readable "
                          "(default 12 W: Green Algorithms, unknown CPU).")(f)
    f = click.option("--training-device-w", type=float, default=None,
                     help="Power of the device the benchmark trained on, for the training energy avoided "
                          "(default 250 W: GTX 1080 Ti / RTX 2080 Ti / V100 PCIe board power).")(f)
    f = click.option("--pue", type=float, default=None,
                     help="Power usage effectiveness of the facility (default 1.56: Uptime Institute 2024; 1 for a desktop).")(f)
    f = click.option("--carbon-intensity", type=float, default=None,
                     help="Grid carbon intensity in gCO2eq/kWh (default 475: world average, IEA 2019).")(f)
    return f


def _executor_options(f, workers: bool = True):
    """--executor, --ray-address (and --workers): where probing, fitness evaluation and scoring run (executor.py)."""
    f = click.option("--ray-address", default=None, metavar="ADDRESS",
                     help="Join this Ray cluster (auto: the one `ray start --head` made on this node; HOST:PORT); "
                          "default with --executor ray: start a local Ray instance sized to this machine.")(f)
    f = click.option("--executor", type=click.Choice(["serial", "process", "ray"]), default=None,
                     help="serial (one process), process (a local pool of --workers) or ray (tasks and fitness "
                          "shards on Ray); default serial for one worker, process for more.")(f)
    if workers:
        f = click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
                         help="Processes (--executor process) or Ray tasks in flight (with ray, 1 = every CPU of "
                              "the cluster).")(f)
    return f


@contextlib.contextmanager
def pool_closed(pool):
    """Close an executor (a process pool, a Ray instance this command started) however the command ends."""
    try:
        yield pool
    finally:
        pool.close()


def _executor(kind, workers, ray_address, device):
    """The executor of a command, made before any work so that a missing Ray or a dead address fails at once."""
    from greenmachine.executor import make_executor

    return make_executor(workers or 1, kind, ray_address or None, device or "cpu")


def _executor_options_no_workers(f):
    return _executor_options(f, workers=False)


def _energy_settings(carbon_intensity, pue, training_device_w, cpu_watts_per_core):
    """The validated conversion factors of a command (unset options keep the documented defaults)."""
    from greenmachine.energy.accounting import EnergySettings

    given = {"carbon_g_per_kwh": carbon_intensity, "pue": pue, "training_device_w": training_device_w,
             "cpu_watts_per_core": cpu_watts_per_core}
    return EnergySettings(**{k: v for k, v in given.items() if v is not None}).validate()


def _meter(device: str, energy_settings):
    from greenmachine.energy.meter import make_meter

    return make_meter(device or "cpu", energy_settings.cpu_watts_per_core)


def _configure_torch() -> None:
    """Apply ``GREENMACHINE_THREADS`` (torch's intra-op threads) once a command's arguments have parsed.

    Lazily, because importing torch to set a thread count would make ``--help`` take seconds; without the
    variable torch keeps its own default and is not imported here at all.
    """
    threads = os.environ.get("GREENMACHINE_THREADS")
    if threads is None:
        return
    try:
        n = int(threads)
        if n < 1:
            raise ValueError
    except ValueError:
        raise GreenmachineError(f"GREENMACHINE_THREADS={threads!r}: expected a whole number >= 1") from None
    import torch

    torch.set_num_threads(n)


class _Command(click.Command):
    """A command that configures torch after its arguments parsed, just before its body runs."""

    def invoke(self, ctx: click.Context):
        _configure_torch()
        return super().invoke(ctx)


def _configures_torch(cmd: click.Command) -> click.Command:
    """Make a command defined elsewhere (a plain ``@click.command``) apply ``GREENMACHINE_THREADS`` too."""
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            _configures_torch(sub)
    elif not isinstance(cmd, _Command) and cmd.callback is not None and not getattr(cmd.callback, "configures_torch", False):
        body = cmd.callback

        def callback(*args, **kwargs):
            _configure_torch()
            return body(*args, **kwargs)

        callback.configures_torch = True  # type: ignore[attr-defined]
        cmd.callback = functools.update_wrapper(callback, body)
    return cmd


class _Group(click.Group):
    """Every ``@cli.command()`` is a :class:`_Command`; every ``@cli.group()`` is a :class:`_Group` again; a
    command added with ``add_command`` gets the same thread setting."""

    command_class = _Command
    group_class = type

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        super().add_command(_configures_torch(cmd), name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="greenmachine")
def cli() -> None:
    """Evolve zero-cost proxies for NAS on NATS-Bench, and score them."""


@cli.command()
@click.option("--space", type=SPACE, default=None, help="Search space (default from the config: tss); its own defaults apply.")
@click.option("--dataset", type=DATASET, default=None, help="Dataset (default from the config: cifar10).")
@click.option("--datasets", "datasets_arg", default=None, metavar="D1,D2,...",
              help="Evolve one proxy for several datasets at once (the same architectures; stratified by the "
                   "first one's accuracy); excludes --dataset.")
@click.option("--combine", type=click.Choice(["mean", "min"]), default=None,
              help="With --datasets: the fitness is the mean (default; smoother for selection) or the min (the "
                   "worst case) of the per-dataset Kendall taus.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help="TOML config file.")
@click.option("--sampling", type=SAMPLING, default=None)
@click.option("--sample-size", type=int, default=None, help="Architectures in the evolution sample.")
@click.option("--population", type=int, default=None)
@click.option("--generations", type=int, default=None)
@click.option("--seed", type=SEED, default=None)
@click.option("--batch-size", type=int, default=None, help="Images in the probe minibatch.")
@click.option("--workers", type=int, default=None,
              help="Processes, or Ray tasks in flight, for probing and fitness shards (default 1; see --executor).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="Run folder (default runs/<space>-<dataset>-<seed>).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last generation.")
@click.option("--seed-baselines/--no-seed-baselines", default=None,
              help="Put the baselines the GP language expresses (synflow, snip, grad_norm, naswot, ...) in generation 0.")
@click.option("--structural/--no-structural", default=None,
              help="Let the GP use the structural terminals wl_depth and al_depth (where a layer sits in its "
                   "network); default from the config: on for sss, off elsewhere.")
@click.option("--jacobian/--no-jacobian", default=None,
              help="Let the GP use the network kernels (jacob_corr: the input-Jacobian correlation of jacov), "
                   "probing one more pass per network; default from the config: off.")
@click.option("--ntk/--no-ntk", default=None,
              help="Let the GP use the empirical NTK (ntk: per-image weight-gradient inner products, TE-NAS) and the "
                   "network-kernel operators, probing one more pass per network (16 backwards); default: off.")
@click.option("--swap/--no-swap", default=None,
              help="Let the GP use SWAP's count of distinct sample-wise activation patterns (swap), probing one "
                   "more forward per network; default from the config: off.")
@click.option("--inits", type=INITS, default=None, metavar="N",
              help="Probe the sample under N initialisations and minibatches (probe seeds S..S+N-1); a tree's "
                   "fitness ranks its mean score over them (N times the probing and the terminals' memory; "
                   "default from the config: 1).")
@click.option("--spectrum-images", type=int, default=None, metavar="K",
              help=SPECTRUM_IMAGES_HELP + " Default from the config: 1.")
@_executor_options_no_workers
@_energy_options
@_common
def evolve(space, dataset, datasets_arg, combine, config_path, sampling, sample_size, population, generations, seed, batch_size, workers,
           out_dir, device, resume, seed_baselines, structural, jacobian, ntk, swap, inits, spectrum_images, data_dir,
           cache_dir,
           no_cache, quiet, carbon_intensity, pue, training_device_w, cpu_watts_per_core, executor=None,
           ray_address=None):
    """Evolve a proxy; writes proxy.json, history.csv, hall_of_fame.json, checkpoint.json and evolve.log."""
    from greenmachine.config import load_config
    from greenmachine.search.proxy_gp import run_evolution
    from greenmachine.report import evolution_summary
    from greenmachine.ui import Reporter, out_console
    from greenmachine.workspace import load_space_truth, resolve_data_dir

    base = load_config(config_path, space=space)
    datasets = _datasets_option(datasets_arg, dataset, base)
    config = base.override(
        space=space, dataset=dataset, sampling=sampling, sample_size=sample_size, population=population,
        generations=generations, seed=seed, batch_size=batch_size, workers=workers, device=device,
        seed_classics=seed_baselines, structural=structural, jacobian=jacobian, ntk=ntk, swap=swap, executor=executor,
        ray_address=ray_address,
        datasets=datasets, combine=combine, inits=inits, spectrum_images=spectrum_images,
    ).validate()
    energy_settings = _energy_settings(carbon_intensity, pue, training_device_w, cpu_watts_per_core)
    data = resolve_data_dir(data_dir)
    out = Path(out_dir or f"runs/{config.space}-{'+'.join(config.datasets) or config.dataset}-{config.seed}")
    from greenmachine.files import check_writable_dir

    check_writable_dir(out, "--out")  # before probing, not after
    reporter = Reporter(quiet=quiet)
    meter = _meter(config.device, energy_settings)
    pool = _executor(config.executor, config.workers, config.ray_address, config.device)
    with pool_closed(pool), reporter.session():
        truth = load_space_truth(data, config.space, reporter)
        # the engine records cumulative joules per generation when it takes the meter (search/engine.py)
        metered = {"meter": meter} if "meter" in inspect.signature(run_evolution).parameters else {}
        engine_j0 = meter.joules()
        result = run_evolution(config, truth, data, out, cache=_cache(cache_dir, no_cache, data), resume=resume,
                               reporter=reporter, executor=pool, **metered)
    energy_block = _evolve_energy(meter, energy_settings, truth, config.datasets or (config.dataset,), result,
                                  meter.joules() - engine_j0, out / "proxy.json")
    out_console.print(evolution_summary(config, result, energy_block))
    click.echo(f"best_kendall_tau={result.best_fitness:.4f}")
    click.echo(f"best_expression={result.best_expression}")  # whole, on one line: copy-paste safe
    click.echo(f"proxy={out / 'proxy.json'}")
    _echo_energy(energy_block)


def _datasets_option(value: str | None, dataset: str | None, config) -> tuple[str, ...] | None:
    """``--datasets a,b,c`` as a tuple of checked names (one line naming an unknown one); ``--dataset`` and
    ``--datasets`` (or a config's ``datasets``) are two modes, and a command line naming both is refused."""
    from greenmachine.probing.datasets import check_dataset

    if value is None:
        if dataset is not None and config.datasets:
            raise GreenmachineError(f"--dataset {dataset} conflicts with the config's datasets "
                                    f"({', '.join(config.datasets)}): give --datasets instead, or another config")
        return None
    if dataset is not None:
        raise GreenmachineError("--dataset and --datasets are mutually exclusive (one dataset, or one proxy "
                                "evolved for several)")
    names = tuple(v.strip() for v in value.split(","))
    if not all(names):
        raise GreenmachineError(f"--datasets {value[:80]!r}: an empty name; give comma-separated dataset names")
    for name in names:
        check_dataset(name)
    return names


@cli.command()
@click.argument("proxy_path", metavar="PROXY.json", type=click.Path(dir_okay=False))
@click.option("--space", type=SPACE, default=None, help="Default: the proxy's space.")
@click.option("--dataset", type=DATASET, default=None, help="Default: the proxy's dataset (another one = transfer).")
@click.option("--sample-size", type=int, default=500, show_default=True)
@click.option("--sampling", type=SAMPLING, default="random", show_default=True)
@click.option("--seed", type=SEED, default=1, show_default=True, help="Seed of the evaluation sample.")
@click.option("--archs", default=None, help="Comma-separated indices or arch strings instead of a sample.")
@click.option("--exclude-evolution-sample", is_flag=True, help="Draw the sample outside the proxy's evolution sample.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None, help="CSV of per-architecture scores.")
@click.option("--inits", type=INITS, default=None, metavar="N",
              help=INITS_HELP + " Default: the proxy's own (1 unless it was evolved with more).")
@click.option("--spectrum-images", type=int, default=None, metavar="K",
              help=SPECTRUM_IMAGES_HELP + " Default: the proxy's own (1 unless it was evolved with more).")
@click.option("--probe-seed", type=SEED, default=None,
              help="Seed of the minibatch and the initialisation (with --inits N: the first of N). Default: the "
                   "proxy's own.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@_executor_options
@_energy_options
@_common
def score(proxy_path, space, dataset, sample_size, sampling, seed, archs, exclude_evolution_sample, out_path, inits,
          spectrum_images, probe_seed, device, data_dir, cache_dir, no_cache, quiet, carbon_intensity, pue,
          training_device_w, cpu_watts_per_core, workers=1, executor=None, ray_address=None):
    """Score a proxy on NATS-Bench architectures; prints kendall_tau=... and spearman_rho=..."""
    from greenmachine.energy.accounting import energy_block, training_energy
    from greenmachine.proxies.proxyfile import load_proxy
    from greenmachine.report import summary_path, write_score_summary
    from greenmachine.proxies.scoring import score_tokens, write_scores_csv
    from greenmachine.ui import Reporter
    from greenmachine.workspace import choose_architectures, load_space_truth, proxy_protocol, resolve_data_dir

    energy_settings = _energy_settings(carbon_intensity, pue, training_device_w, cpu_watts_per_core)
    proxy = load_proxy(proxy_path)
    if out_path:
        _check_outputs(out_path, {"CSV": Path(out_path), "summary": summary_path(out_path)}, inputs=[proxy_path])
    space = space or proxy.space or "tss"
    dataset = dataset or proxy.dataset or "cifar10"
    data = resolve_data_dir(data_dir)
    reporter = Reporter(quiet=quiet)
    meter = _meter(device, energy_settings)
    pool = _executor(executor, workers, ray_address, device)
    with pool_closed(pool), reporter.session():
        truth = load_space_truth(data, space, reporter)
        # indices of another space name other networks: nothing to exclude then
        exclude = proxy.sample_indices if exclude_evolution_sample and proxy.space in (None, space) else []
        indices = choose_architectures(truth, dataset, archs, sample_size, sampling, seed, exclude)
        # the proxy's own probe protocol (minibatch, seeds, spectrum images, initialisations), on the scored dataset
        settings, own_inits = proxy_protocol(proxy, space, dataset, device, data, spectrum_images, probe_seed)
        result = score_tokens(proxy.tokens, truth, dataset, indices, settings, data,
                              cache=_cache(cache_dir, no_cache, data), executor=pool,
                              reporter=reporter, meter=meter, inits=own_inits if inits is None else inits)
    block = energy_block(meter, energy_settings, training_energy(truth, dataset, result.indices,
                                                                 energy_settings.training_device_w),
                         "score", len(result.indices))
    if out_path:
        write_scores_csv(result, out_path)
        write_score_summary(result, proxy_path, space, dataset, sampling if not archs else "archs", seed,
                            summary_path(out_path), energy=block,
                            extra={"inits": result.inits, "spectrum_images": settings.spectrum_images,
                                   "probe_seed": settings.batch_seed, "init_seed": settings.init_seed})
    click.echo(f"architectures={len(result.indices)} space={space} dataset={dataset}")
    click.echo(f"kendall_tau={result.kendall_tau:.4f}")
    click.echo(f"spearman_rho={result.spearman_rho:.4f}")
    click.echo(f"seconds_per_network={result.seconds / max(1, len(result.indices)):.3f}")
    _echo_energy(block)


@cli.command()
@click.option("--space", type=SPACE, default="tss", show_default=True)
@click.option("--dataset", type=DATASET, default="cifar10", show_default=True)
@click.option("--sample-size", type=int, default=500, show_default=True)
@click.option("--sampling", type=SAMPLING, default="random", show_default=True)
@click.option("--seed", type=SEED, default=1, show_default=True, help="Seed of the sample.")
@click.option("--archs", default=None, help="Comma-separated indices or arch strings instead of a sample.")
@click.option("--proxies", default=None, help="Comma-separated baselines (default: all registered).")
@click.option("--include", "includes", multiple=True, type=click.Path(dir_okay=False),
              help="An evolved proxy.json to score beside the baselines (repeatable).")
@click.option("--exclude-evolution-sample", is_flag=True, help="Draw the sample outside the included proxies' samples.")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Images in the probe minibatch.")
@click.option("--probe-seed", type=SEED, default=0, show_default=True,
              help="Seed of the minibatch and of the initialisation (evolve's --seed gives the same protocol).")
@click.option("--inits", type=INITS, default=1, show_default=True, metavar="N", help=INITS_HELP)
@click.option("--spectrum-images", type=int, default=1, show_default=True, metavar="K",
              help=SPECTRUM_IMAGES_HELP + " For the included proxies; the meco baseline stays MeCo's.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="CSV of per-architecture scores; a .summary.json and a .png land beside it.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@_executor_options
@_energy_options
@_common
def baselines(space, dataset, sample_size, sampling, seed, archs, proxies, includes, exclude_evolution_sample,
              batch_size, probe_seed, inits, spectrum_images, out_path, device, data_dir, cache_dir, no_cache, quiet,
              carbon_intensity, pue, training_device_w, cpu_watts_per_core, workers=1, executor=None,
              ray_address=None):
    """Score the hand-designed proxies (and evolved ones) on the same architectures, images and seeds."""
    from greenmachine.energy.accounting import energy_block, training_energy
    from greenmachine.proxies.comparison import DEFAULT_PROXIES, check_proxy_names, compare, scatter_figure, write_summary
    from greenmachine.proxies.proxyfile import load_proxy
    from greenmachine.report import comparison_table, summary_path
    from greenmachine.ui import Reporter, out_console
    from greenmachine.workspace import choose_architectures, load_space_truth, probe_settings, resolve_data_dir

    energy_settings = _energy_settings(carbon_intensity, pue, training_device_w, cpu_watts_per_core)
    names = check_proxy_names([p.strip() for p in proxies.split(",") if p.strip()] if proxies else DEFAULT_PROXIES)
    if not names and not includes:
        raise GreenmachineError(f"--proxies {proxies!r} names no proxy (and no --include was given)")
    evolved = {}
    for path in includes:
        p = Path(path)
        evolved[_run_name(p, evolved, "evolved_")] = load_proxy(p)
    if out_path:
        _check_outputs(out_path, {"CSV": Path(out_path), "summary": summary_path(out_path),
                                  "figure": Path(out_path).with_suffix(".png")}, inputs=includes)
    data = resolve_data_dir(data_dir)
    reporter = Reporter(quiet=quiet)
    meter = _meter(device, energy_settings)
    pool = _executor(executor, workers, ray_address, device)
    with pool_closed(pool), reporter.session():
        truth = load_space_truth(data, space, reporter)
        exclude = {i for p in evolved.values() if p.space == space for i in p.sample_indices} \
            if exclude_evolution_sample else set()
        indices = choose_architectures(truth, dataset, archs, sample_size, sampling, seed, sorted(exclude))
        settings = probe_settings(space, dataset, batch_size, probe_seed, device, data_dir=data,
                                  spectrum_images=spectrum_images)
        result = compare(truth, dataset, indices, settings, data, names, evolved, out_csv=out_path,
                         cache=_cache(cache_dir, no_cache, data), reporter=reporter, meter=meter, executor=pool,
                         inits=inits)
    block = energy_block(meter, energy_settings, training_energy(truth, dataset, result.indices,
                                                                 energy_settings.training_device_w),
                         "baselines", len(result.indices))
    title = f"{space} / {dataset}: {len(indices)} architectures, batch {batch_size}" + \
        (f", mean of {inits} initialisations" if inits > 1 else "") + \
        (f", spectra of {spectrum_images} images" if spectrum_images > 1 else "")
    out_console.print(comparison_table(result, title, block))
    for s in result.ranked():
        click.echo(f"{s.name}: kendall_tau={s.kendall_tau:.4f} spearman_rho={s.spearman_rho:.4f} "
                   f"valid={s.valid} seconds_per_network={s.seconds_per_network:.3f}")
    _echo_energy(block)
    if out_path:
        meta = {"space": space, "dataset": dataset, "sampling": sampling if not archs else "archs", "seed": seed,
                "batch_size": batch_size, "probe_seed": probe_seed, "inits": inits,
                "spectrum_images": spectrum_images}
        write_summary(result, summary_path(out_path), meta, energy=block)
        figure = scatter_figure(result, Path(out_path).with_suffix(".png"), title)
        click.echo(f"csv={out_path}")
        if figure:
            click.echo(f"figure={figure}")


@cli.command("select")
@click.argument("proxy_paths", metavar="PROXY.json...", nargs=-1, required=True,
                type=click.Path(dir_okay=False))
@click.option("--dataset", type=DATASET, default=None,
              help="Rank the samples by this dataset's accuracy (default: the candidates' own; another = transfer).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for proxy.json (the chosen tree) and selection.csv (every candidate on every sample).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@_executor_options
@_energy_options
@_common
def select_cmd(proxy_paths, dataset, out_dir, device, data_dir, cache_dir, no_cache, quiet, carbon_intensity, pue,
               training_device_w, cpu_watts_per_core, workers=1, executor=None, ray_address=None):
    """Choose one of several evolved proxies (one per evolution seed) by its Kendall tau on the other runs'
    evolution samples; the chosen file records every candidate's sample as seen."""
    from rich.table import Table

    from greenmachine.energy.accounting import energy_block, training_energy
    from greenmachine.proxies.proxyfile import load_proxy, save_proxy
    from greenmachine.search.selection import CRITERION, check_candidates, chosen_proxy, seen_indices, \
        select_proxy, write_selection_csv
    from greenmachine.ui import Reporter, out_console
    from greenmachine.workspace import load_space_truth, resolve_data_dir

    energy_settings = _energy_settings(carbon_intensity, pue, training_device_w, cpu_watts_per_core)
    candidates, paths = {}, []
    for path in proxy_paths:
        p = Path(path)
        if any(_same_file(p, q) for q in paths):
            raise GreenmachineError(f"{path} is given twice")
        candidates[_run_name(p, candidates)] = load_proxy(p)
        paths.append(p)
    space, dataset = check_candidates(candidates, dataset)
    if out_dir:
        out = Path(out_dir)
        _check_outputs(out_dir, {"proxy": out / "proxy.json", "table": out / "selection.csv"}, inputs=paths)
    data = resolve_data_dir(data_dir)
    reporter = Reporter(quiet=quiet)
    meter = _meter(device, energy_settings)
    pool = _executor(executor, workers, ray_address, device)
    with pool_closed(pool), reporter.session():
        truth = load_space_truth(data, space, reporter)
        selection = select_proxy(truth, candidates, data, device, dataset, cache=_cache(cache_dir, no_cache, data),
                                 reporter=reporter, executor=pool, meter=meter)
    seen = seen_indices(candidates)
    block = energy_block(meter, energy_settings, training_energy(truth, dataset, seen,
                                                                 energy_settings.training_device_w),
                         "select", len(seen))
    table = Table(title=f"{space} / {dataset}: Kendall tau of each candidate (row) on each sample (column)",
                  caption=f"criterion: {CRITERION}")
    table.add_column("candidate")
    table.add_column("fitness", justify="right")
    for name in selection.names:
        table.add_column(name, justify="right")
    table.add_column("criterion", justify="right")
    for i, name in enumerate(selection.names):
        fit = candidates[name].fitness
        table.add_row(("* " if i == selection.chosen else "") + name, "-" if fit is None else f"{fit:.4f}",
                      *[f"({t:.4f})" if i == j else f"{t:.4f}" for j, t in enumerate(selection.taus[i])],
                      f"{selection.criterion[i]:.4f}")
    out_console.print(table)
    click.echo(f"chosen={selection.chosen_name} criterion={selection.criterion[selection.chosen]:.4f}")
    click.echo(f"expression={candidates[selection.chosen_name].expression}")
    _echo_energy(block)
    if out_dir:
        out.mkdir(parents=True, exist_ok=True)
        proxy = chosen_proxy(selection, candidates, paths)
        proxy.extra["selection"]["energy"] = block
        write_selection_csv(selection, candidates, out / "selection.csv")
        save_proxy(proxy, out / "proxy.json")
        click.echo(f"proxy={out / 'proxy.json'}")
        click.echo(f"csv={out / 'selection.csv'}")


@cli.group()
def truth() -> None:
    """Ground-truth tables."""


@truth.command("export")
@click.option("--space", type=SPACE, required=True)
@click.option("--official", "official_dir", type=click.Path(), required=True,
              help="Official NATS-Bench directory, e.g. NATS-sss-v1_0-50262-simple.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True,
              help="CSV to write; put it at DATA/nats/<space>-hp<200|90>.csv to have it found.")
@click.option("--quiet", is_flag=True)
def truth_export(space, official_dir, out_path, quiet):
    """Read an official directory once and write the compact table (index, arch, accuracies, train times)."""
    from greenmachine.spaces.truth import export_table, load_official
    from greenmachine.ui import Reporter

    reporter = Reporter(quiet=quiet)
    with reporter.session():
        gt = load_official(official_dir, space, progress=lambda todo: reporter.track(todo, len(todo), "reading records"))
    rows = export_table(gt, out_path)
    click.echo(f"wrote {rows} architectures to {out_path}")


@cli.group()
def cache() -> None:
    """The probe cache: what it holds, and pruning it (set $GREENMACHINE_CACHE_MAX_GB to cap it as runs write)."""


_CACHE_DIR = click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                          help="Probe cache; default $GREENMACHINE_CACHE or ~/.cache/greenmachine.")


def _cache_folder(cache_dir):
    from greenmachine.probing.cache import ProbeCache, cache_root

    root = cache_root(cache_dir)
    if root.exists() and not root.is_dir():
        raise GreenmachineError(f"the probe cache {root} is not a folder")
    return ProbeCache(root)


@cache.command("info")
@_CACHE_DIR
def cache_info(cache_dir):
    """Entries and size per space, dataset and pass, and the cap in force."""
    from collections import defaultdict

    from greenmachine.probing.cache import MAX_GB_ENV, max_bytes_from_env

    cap = max_bytes_from_env()  # a bad value is an error before anything is listed
    store = _cache_folder(cache_dir)
    groups: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    entries = store.entries()
    for e in entries:
        groups[(e.space, e.dataset, e.group)][0] += 1
        groups[(e.space, e.dataset, e.group)][1] += e.size
    for (space, dataset, group), (n, size) in sorted(groups.items()):
        click.echo(f"{space}/{dataset}/{group}: {n} entries, {size / 1e9:.2f} GB")
    click.echo(f"cache={store.root} entries={len(entries)} gb={sum(e.size for e in entries) / 1e9:.2f} "
               f"max_gb={'none' if cap is None else f'{cap / 1e9:g}'} (${MAX_GB_ENV})")


@cache.command("prune")
@click.option("--max-gb", required=True, help="Keep at most this many GB (10^9 bytes); 0 empties the cache.")
@_CACHE_DIR
def cache_prune(max_gb, cache_dir):
    """Remove the least recently used entries until the cache holds at most --max-gb."""
    from greenmachine.probing.cache import gb_to_bytes

    store = _cache_folder(cache_dir)
    r = store.prune(gb_to_bytes(max_gb, "--max-gb", allow_zero=True))
    click.echo(f"removed {r.removed} entries ({r.freed / 1e9:.2f} GB); kept {r.kept} ({r.kept_bytes / 1e9:.2f} GB) "
               f"in {store.root}")


@cli.group()
def energy() -> None:
    """Energy: what runs spent, and the EC-NAS training-energy surrogate."""


def _distinct_paths(*named) -> None:
    """Refuse an output that would overwrite an input or another output of the same command (before any work)."""
    seen: dict[Path, str] = {}
    for name, path in named:
        if path is None:
            continue
        key = Path(path).resolve()
        if key in seen:
            raise GreenmachineError(f"{name} and {seen[key]} are the same file ({path})")
        seen[key] = name


@energy.command("fit")
@click.option("--data", "data_path", type=click.Path(dir_okay=False), required=True,
              help="CELLS.csv with measured energy: an EC-NAS measured file or the 7-vertex surrogate set.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True,
              help="Model file to write (JSON); the held-out figures also go to <stem>.metrics.json.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split and of the models.")
@click.option("--holdout", type=float, default=0.2, show_default=True,
              help="Fraction of distinct cells held out; 0 trains on every cell and reports no held-out figures.")
@click.option("--kinds", default="mlp,gbr", show_default=True,
              help="Model kinds compared (mlp, gbr); the better by validation Kendall tau is kept.")
@click.option("--scatter", "scatter_path", type=click.Path(dir_okay=False), default=None,
              help="PNG of held-out predicted vs measured energy.")
def energy_fit(data_path, out_path, seed, holdout, kinds, scatter_path):
    """Fit the training-energy surrogate on measured cells; print and save held-out Kendall tau, R^2 and MAE."""
    import json

    from greenmachine.energy.surrogate import fit_surrogate, read_cells_csv, scatter_png
    from greenmachine.files import check_writable_file, write_text_atomic

    out = check_writable_file(out_path)
    _distinct_paths(("--data", data_path), ("--out", out_path), ("the metrics file", out.with_name(out.stem + ".metrics.json")),
                    ("--scatter", scatter_path))
    if scatter_path:
        check_writable_file(scatter_path, "--scatter")
        if holdout == 0:
            raise GreenmachineError("--scatter shows held-out cells; --holdout 0 leaves none")
    table = read_cells_csv(data_path, need_energy=True)
    result = fit_surrogate(table, seed=seed, holdout=holdout, kinds=[k.strip() for k in kinds.split(",") if k.strip()],
                           log=lambda msg: click.echo(msg, err=True))
    model = result.model
    model.save(out)
    metrics_path = out.with_name(out.stem + ".metrics.json")
    write_text_atomic(metrics_path, json.dumps({"model": str(out), "kind": model.kind, **model.metrics,
                                                "training": model.training}, indent=2) + "\n")
    h = model.metrics["heldout"]
    if scatter_path and h:
        scatter_png(scatter_path, result.heldout_predicted, table.energy[result.heldout_index],
                    f"{model.kind}, held-out of {Path(data_path).name}, seed {seed}")
    click.echo(f"wrote {out} ({model.kind}, trained on {model.training['train_rows']} rows) and {metrics_path}")
    if not h:
        click.echo(f"kind={model.kind} trained on every cell (--holdout 0): no held-out figures")
        return
    click.echo(f"kind={model.kind} heldout_n={h['n']} kendall_tau={h['kendall_tau']:.4f} "
               f"spearman_rho={h['spearman_rho']:.4f} r2={h['r2']:.4f} mae_kwh={h['mae_kwh']:.6f} "
               f"params_only_kendall_tau={h['params_only_kendall_tau']:.4f}")


@energy.command("predict")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), required=True, help="A model from 'energy fit'.")
@click.option("--cells", "cells_path", type=click.Path(dir_okay=False), required=True,
              help="CELLS.csv (energy columns optional; where present, the predictions are scored against them).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True,
              help="PRED.csv: module_hash,energy_kwh (predicted) [,measured_energy_kwh].")
@click.option("--scatter", "scatter_path", type=click.Path(dir_okay=False), default=None,
              help="PNG of predicted vs measured energy (needs measured energy in CELLS.csv).")
def energy_predict(model_path, cells_path, out_path, scatter_path):
    """Predict the 4-epoch training energy (kWh) of NAS-Bench-101 cells."""
    from greenmachine.energy.surrogate import load_model, read_cells_csv, regression_metrics, scatter_png, write_predictions
    from greenmachine.files import check_writable_file

    check_writable_file(out_path)
    _distinct_paths(("--model", model_path), ("--cells", cells_path), ("--out", out_path), ("--scatter", scatter_path))
    if scatter_path:
        check_writable_file(scatter_path, "--scatter")
    model = load_model(model_path)
    table = read_cells_csv(cells_path, need_energy=False)
    if scatter_path and table.energy is None:
        raise GreenmachineError(f"--scatter needs measured energy in {cells_path} (energy_kwh_4ep or energy_kwh)")
    predicted = model.predict_cells(table.cells)
    write_predictions(out_path, table.hashes, predicted, table.energy)
    click.echo(f"wrote {len(predicted)} predictions to {out_path}")
    if table.energy is not None:
        m = regression_metrics(predicted, table.energy)
        click.echo(f"against {table.energy_column}: n={m['n']} kendall_tau={m['kendall_tau']:.4f} "
                   f"spearman_rho={m['spearman_rho']:.4f} r2={m['r2']:.4f} mae_kwh={m['mae_kwh']:.6f} "
                   f"mean_ratio_predicted_measured={float((predicted / table.energy).mean()):.3f}")
        if scatter_path:
            scatter_png(scatter_path, predicted, table.energy,
                        f"{model.kind} from {Path(str(model.training.get('data', '?'))).name} on {Path(cells_path).name}")


@energy.command("curve")
@click.option("--data", "data_path", type=click.Path(dir_okay=False), required=True, help="CELLS.csv with measured energy.")
@click.option("--out", "out_prefix", type=click.Path(dir_okay=False), required=True,
              help="Prefix: writes <prefix>.csv and <prefix>.png.")
@click.option("--sizes", default="50,100,200,400,800,1600,all", show_default=True,
              help="Training cells per point ('all' = the whole training part).")
@click.option("--kinds", default="mlp,gbr", show_default=True)
@click.option("--repeats", type=int, default=1, show_default=True, help="Random training subsets per size.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--holdout", type=float, default=0.2, show_default=True)
def energy_curve(data_path, out_prefix, sizes, kinds, repeats, seed, holdout):
    """Learning curve: held-out Kendall tau and MAE against the number of training cells (CSV and PNG)."""
    from greenmachine.energy.surrogate import (KINDS, curve_png, grouped_split, learning_curve, read_cells_csv,
                                               write_curve_csv)
    from greenmachine.files import check_writable_file

    csv_path, png_path = Path(out_prefix + ".csv"), Path(out_prefix + ".png")
    check_writable_file(csv_path)
    _distinct_paths(("--data", data_path), ("the curve CSV", csv_path), ("the curve PNG", png_path))
    if not 1 <= repeats <= 99:
        raise GreenmachineError(f"--repeats must be between 1 and 99, got {repeats}")
    kind_list = [k.strip() for k in kinds.split(",") if k.strip()]
    if not kind_list or any(k not in KINDS for k in kind_list):
        raise GreenmachineError(f"--kinds must name some of {', '.join(KINDS)}, got {kinds!r}")
    table = read_cells_csv(data_path, need_energy=True)
    n_train = len(grouped_split(table.hashes, holdout, seed)[0])
    try:
        size_list = sorted({n_train if s.strip() == "all" else int(s) for s in sizes.split(",") if s.strip()})
    except ValueError:
        raise GreenmachineError(f"--sizes must be integers or 'all', got {sizes!r}") from None
    rows = []
    for kind in kind_list:
        rows += learning_curve(table, kind, size_list, seed=seed, holdout=holdout, repeats=repeats,
                               log=lambda msg: click.echo(msg, err=True))
    write_curve_csv(csv_path, rows)
    curve_png(png_path, rows, f"energy surrogate learning curve, {Path(data_path).name}, held-out {holdout:.0%} (seed {seed})")
    for r in rows:
        click.echo(f"kind={r['kind']} train_cells={r['train_cells']} repeat={r['repeat']} kendall_tau={r['kendall_tau']:.4f} "
                   f"r2={r['r2']:.4f} mae_kwh={r['mae_kwh']:.6f}")
    click.echo(f"wrote {csv_path} and {png_path}")


@energy.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write the totals as JSON.")
def energy_report(runs, json_out):
    """Sum what a set of runs spent (probing, GP, scoring) from the energy blocks of their summary JSONs."""
    import json

    from greenmachine.files import write_text_atomic
    from greenmachine.report import energy_report_table, find_energy_blocks

    found = find_energy_blocks([Path(r) for r in runs])
    table, total = energy_report_table(found)
    click.echo(table, nl=False)
    click.echo(f"runs={len(found)} joules={total['joules']:.1f} kwh={total['kwh']:.6g} co2eq_g={total['co2eq_g']:.4g} "
               f"estimated={str(total['estimated']).lower()}")
    if json_out:
        write_text_atomic(json_out, json.dumps({"files": [str(p) for p, _, _ in found], "total": total}, indent=2) + "\n")


def _echo_energy(block: dict) -> None:
    """The energy of a command on stdout: one readable line and the machine-readable figures."""
    from greenmachine.energy.accounting import summary_line

    click.echo(f"energy: {summary_line(block)}")
    avoided = block["training_kwh_avoided"]
    click.echo(f"energy_joules={block['joules']:.1f} source={block['source']} estimated={str(block['estimated']).lower()} "
               f"co2eq_g={block['co2eq_g']:.4g} training_kwh_avoided={'null' if avoided is None else f'{avoided:.6g}'}")


def _evolve_energy(meter, energy_settings, truth, datasets: tuple[str, ...], result, engine_j: float,
                   proxy_path: Path) -> dict:
    """The energy block of an evolution, added to its proxy.json (the run record) and returned for the summary.

    A resumed run is one run: the engine's checkpoint keeps the joules of the earlier parts (``result.extra``), and
    they are added to what this invocation measured (``engine_j`` is this part's share of the engine's total)."""
    import json

    from greenmachine.energy.accounting import energy_block, training_energy_all
    from greenmachine.files import write_text_atomic

    indices = result.sample_indices
    extra = getattr(result, "extra", None) or {}
    parts = int(extra.get("parts") or 1)
    earlier = max(0.0, float(extra["joules"]) - engine_j) if parts > 1 and extra.get("joules") is not None else 0.0
    block = energy_block(meter, energy_settings,
                         training_energy_all(truth, datasets, indices, energy_settings.training_device_w),
                         "evolve", len(indices), joules=meter.joules() + earlier)
    block.update(parts=parts, earlier_parts_j=earlier)
    if proxy_path.is_file():
        data = json.loads(proxy_path.read_text())
        data["energy"] = block
        write_text_atomic(proxy_path, json.dumps(data, indent=2) + "\n")
    return block


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None, help="Override the config's device.")
@_common
def reproduce(config_path, out_dir, device, data_dir, cache_dir, no_cache, quiet):
    """A published setting: evolve with the config (resuming a stopped run), then score on a disjoint sample."""
    from greenmachine.config import load_config
    from greenmachine.reproduction import reproduce as run
    from greenmachine.ui import Reporter
    from greenmachine.workspace import resolve_data_dir

    from greenmachine.files import check_writable_dir

    config = load_config(config_path).override(device=device).validate()
    check_writable_dir(out_dir, "--out")  # before probing, not after
    data = resolve_data_dir(data_dir)
    reporter = Reporter(quiet=quiet)
    with reporter.session():
        result = run(config, data, Path(out_dir), _cache(cache_dir, no_cache, data), reporter)
    click.echo(f"architectures={len(result.indices)} held-out ({config.eval_sampling})")
    click.echo(f"kendall_tau={result.kendall_tau:.4f}")
    click.echo(f"spearman_rho={result.spearman_rho:.4f}")


@cli.command()
@click.argument("runs", nargs=-1, type=click.Path(file_okay=False))
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True, help="Markdown file to write.")
def report(runs, out_path):
    """Markdown table of measured Kendall tau (from each run's scores.summary.json) beside the published values."""
    from greenmachine.report import reproduction_table

    text = reproduction_table([Path(r) for r in runs])
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(text)
    click.echo(text)


@cli.command()
@click.option("--settings", "settings_arg", default=None, metavar="SPACE/DATASET,...",
              help="Settings to run (commas or spaces; default tss/cifar10, tss/cifar100, tss/ImageNet16-120, "
                   "sss/cifar10, sss/cifar100).")
@click.option("--seeds", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Evolution seeds per setting (0..N-1).")
@click.option("--heldout", type=int, default=2000, show_default=True,
              help="Architectures in each setting's held-out sample (disjoint from every seed's evolution sample).")
@click.option("--heldout-seed", type=SEED, default=1, show_default=True, help="Seed of the held-out draw.")
@click.option("--baselines", "baselines_arg", default="params,synflow,naswot,meco", show_default=True,
              help="Baselines scored on the held-out sample (comma-separated; empty for none).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Evolve config (TOML) for every setting; default: the package defaults and each space's own.")
@click.option("--population", type=int, default=None)
@click.option("--generations", type=int, default=None)
@click.option("--sample-size", type=int, default=None, help="Architectures in each evolution sample.")
@click.option("--sampling", type=SAMPLING, default=None,
              help="How each evolution sample is drawn (default from the config: stratified); the held-out "
                   "sample is random either way.")
@click.option("--batch-size", type=int, default=None, help="Images in the probe minibatch (evolution and held out).")
@click.option("--structural/--no-structural", default=None,
              help="Let the GP use the structural terminals (default from the config: on for sss, off elsewhere).")
@click.option("--jacobian/--no-jacobian", default=None,
              help="Let the GP use the network kernels (jacob_corr), probing one more pass (default: off).")
@click.option("--ntk/--no-ntk", default=None,
              help="Let the GP use the empirical NTK (ntk), probing one more pass (default: off).")
@click.option("--swap/--no-swap", default=None,
              help="Let the GP use SWAP's activation-pattern count (swap), probing one more forward (default: off).")
@click.option("--inits", type=INITS, default=1, show_default=True, metavar="N",
              help="Held-out and transfer scores (evolved and baselines): the mean over N initialisations and "
                   "minibatches (probe seeds 0..N-1); the evolutions are unchanged.")
@click.option("--spectrum-images", type=int, default=1, show_default=True, metavar="K",
              help=SPECTRUM_IMAGES_HELP + " Held-out and transfer scores of the evolved proxies.")
@click.option("--select", "select_runs", type=click.IntRange(1, 20), default=1, show_default=True, metavar="K",
              help="Each seed's proxy is the one `select` chooses among K evolutions (seeds kK..kK+K-1).")
@click.option("--transfer/--no-transfer", default=True, show_default=True,
              help="Also score every seed's proxy on the held-out samples of the other datasets of its space.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/quality", show_default=True,
              help="Run folders: <out>/<space>-<dataset>/seed-<k>/.")
@click.option("--table", "table_path", type=click.Path(dir_okay=False), default="results/quality.md",
              show_default=True, help="Markdown table to write; the CSV goes beside it (.csv).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@_common
def quality(settings_arg, seeds, heldout, heldout_seed, baselines_arg, config_path, population, generations,
            sample_size, sampling, batch_size, structural, jacobian, ntk, swap, inits, spectrum_images, select_runs,
            transfer, out_dir, table_path, device, data_dir, cache_dir, no_cache, quiet):
    """Evolve proxies over seeds and settings, score them and the baselines on one held-out sample per setting,
    and tabulate (make quality); a stopped run resumes where it stopped."""
    from greenmachine.files import check_writable_dir
    from greenmachine.quality import DEFAULT_SETTINGS, QualityPlan, parse_settings, run_quality
    from greenmachine.ui import Reporter
    from greenmachine.workspace import resolve_data_dir

    overrides = {k: v for k, v in {"population": population, "generations": generations, "sample_size": sample_size,
                                   "sampling": sampling, "batch_size": batch_size, "structural": structural,
                                   "jacobian": jacobian, "ntk": ntk, "swap": swap}.items() if v is not None}
    plan = QualityPlan(
        settings=parse_settings(settings_arg if settings_arg is not None else ",".join(DEFAULT_SETTINGS)),
        seeds=seeds, heldout=heldout, heldout_seed=heldout_seed,
        baselines=tuple(b.strip() for b in baselines_arg.split(",") if b.strip()), config_path=config_path,
        overrides=overrides, device=device, transfer=transfer, heldout_inits=inits,
        heldout_spectrum_images=spectrum_images, select=select_runs,
    ).validate()
    check_writable_dir(out_dir, "--out")
    _check_outputs(table_path, {"table": Path(table_path), "CSV": Path(table_path).with_suffix(".csv")})
    data = resolve_data_dir(data_dir)
    reporter = Reporter(quiet=quiet)
    with reporter.session():
        results = run_quality(plan, data, Path(out_dir), Path(table_path), _cache(cache_dir, no_cache, data),
                              reporter)
    click.echo(Path(table_path).read_text(), nl=False)
    for r in results:
        mean, std = r.mean_std()
        click.echo(f"{r.name}: evolved_mean_kendall_tau={mean:.4f} std={std:.4f} seeds={len(r.seed_taus)} "
                   f"heldout={r.heldout}")
    click.echo(f"table={table_path}")
    click.echo(f"csv={Path(table_path).with_suffix('.csv')}")


@cli.command()
@click.option("--space", type=SPACE, default="sss", show_default=True)
@click.option("--dataset", type=DATASET, default="cifar10", show_default=True)
@click.option("--sample-size", type=int, default=2000, show_default=True,
              help="Architectures per random sample ranked (from the half not trained on).")
@click.option("--draws", type=int, default=20, show_default=True, help="Random samples drawn.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the split and of the draws.")
@click.option("--scores", "scores_path", type=click.Path(dir_okay=False), default=None,
              help="Instead: a proxy's scores CSV (columns arch and --score-column, e.g. heldout_scores.csv). "
                   "Cross-fitted on its architectures: the proxy alone, boosted trees on the encoding, and on the "
                   "encoding plus the proxy's rank; and the encoding entries the proxy's ranking errors follow.")
@click.option("--score-column", default="score", show_default=True,
              help="With --scores: the column to read (baselines.csv has one per baseline).")
@click.option("--folds", type=int, default=2, show_default=True, help="With --scores: cross-fitting folds.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="With --scores: a PNG of accuracy rank against proxy rank, the first named entry's "
                   "architectures in colour.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Data folder (nats/); default $GREENMACHINE_DATA.")
@click.pass_context
def ceiling(ctx, space, dataset, sample_size, draws, seed, scores_path, score_column, folds, plot_path, data_dir):
    """How well predictors fitted on half the benchmark's accuracies rank random samples of the other half: the
    reference a zero-cost proxy is measured against (README, Proxy quality). With --scores: what the architecture
    tells about accuracy that one proxy's scores miss."""
    from greenmachine.ceiling import encoding_ceiling, proxy_gap, read_scores
    from greenmachine.files import check_writable_file
    from greenmachine.spaces import get_space
    from greenmachine.workspace import load_space_truth, resolve_data_dir

    given = {name for name in ("sample_size", "draws", "score_column", "folds", "plot_path")
             if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT}
    if scores_path is None and given & {"score_column", "folds", "plot_path"}:
        raise GreenmachineError("ceiling: --score-column, --folds and --plot apply only with --scores")
    if scores_path is not None and given & {"sample_size", "draws"}:
        raise GreenmachineError("ceiling: --sample-size and --draws do not apply with --scores (its architectures "
                                "are the sample)")
    space_obj = get_space(space)
    space_obj.check_dataset(dataset)
    if scores_path is not None:
        space_obj.encoding_names()  # a space without an encoding says so before the scores or the truth are read
        if plot_path is not None:
            check_writable_file(plot_path, "--plot")
        archs, values = read_scores(scores_path, score_column)
        truth = load_space_truth(resolve_data_dir(data_dir), space)
        g = proxy_gap(truth, space_obj, dataset, archs, values, folds, seed, source=f"scores file {scores_path}",
                      plot=plot_path)
        dropped = f" ({g.dropped} without a finite score left out)" if g.dropped else ""
        click.echo(f"{space}/{dataset}: {g.scored:,} scored architectures{dropped}, {g.folds}-fold cross-fitted; "
                   f"Kendall tau on the test folds, mean over the folds")
        click.echo(f"proxy_kendall_tau={g.proxy:.4f}")
        click.echo(f"encoding_kendall_tau={g.encoding:.4f}")
        click.echo(f"encoding_plus_proxy_kendall_tau={g.encoding_plus_proxy:.4f}")
        click.echo("encoding entries the proxy's ranking errors follow (correlation with accuracy rank minus proxy "
                   "rank; positive: under-rated by the proxy):")
        for name, value in g.missed:
            click.echo(f"  {value:+.3f}  {name}")
        if not g.missed:
            click.echo("  none: the proxy ranks the scored architectures as their accuracies do")
        if plot_path is not None:
            click.echo(f"plot={plot_path}")
        return
    truth = load_space_truth(resolve_data_dir(data_dir), space)
    r = encoding_ceiling(truth, space_obj, dataset, sample_size, draws, seed)
    click.echo(f"{space}/{dataset}: predictors fitted on {r.trained_on:,} architectures' accuracies rank "
               f"{r.draws} random samples of {r.sample_size:,} from the other half at Kendall tau")
    click.echo(f"boosted_trees_kendall_tau={r.boosted[0]:.4f} std={r.boosted[1]:.4f}")
    click.echo(f"linear_kendall_tau={r.linear[0]:.4f} std={r.linear[1]:.4f}")


# `greenmachine search` lives beside the search it drives (search/commands.py imports only click at module level)
from greenmachine.search.commands import search as _search_command  # noqa: E402

cli.add_command(_search_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn every error into one line on stderr and a non-zero exit."""
    try:
        code = cli.main(args=argv, prog_name="greenmachine", standalone_mode=False)
    except GreenmachineError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.UsageError as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code or 1)
    except (KeyboardInterrupt, click.Abort):
        click.echo("interrupted: what was written so far is kept (resume an evolution with --resume)", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: still one line, the traceback only on request
        if os.environ.get("GREENMACHINE_DEBUG"):
            raise
        click.echo(f"error: internal error {type(exc).__name__}: {exc} (GREENMACHINE_DEBUG=1 shows the traceback)", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
