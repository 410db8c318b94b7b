"""``make bench``: probe cost per network (seconds and joules), its ratio to a plain forward+backward, and tree
evaluations per second.

    python -m greenmachine.bench [--networks 20] [--space tss] [--dataset cifar10] [--batch-size 64] [--device cpu]

Timings come from this machine at the time of the run; nothing is cached (the probe cache is off). Joules come
from the meter this machine allows (NVML, RAPL, or the labelled CPU-time estimate; see ``greenmachine.energy.meter``),
one window around the whole batch, apportioned to networks by their probe seconds.
"""

from __future__ import annotations

import random
import statistics
import time

import click
import torch
from deap import gp

from greenmachine.energy.accounting import format_joules
from greenmachine.energy.meter import DEFAULT_CPU_WATTS_PER_CORE, make_meter
from greenmachine.probing.cache import probe_sample
from greenmachine.proxies.classic import classic_names, classic_tokens
from greenmachine.probing.datasets import probe_batch
from greenmachine.proxies.primitives import evaluate, primitive_set, tree_tokens
from greenmachine.probing.probe import init_network, time_forward_backward
from greenmachine.spaces import space_names
from greenmachine.spaces.sampling import sample_indices
from greenmachine.probing.terminals import ProbeBatch
from greenmachine.workspace import load_space_truth, probe_settings, resolve_data_dir


@click.command()
@click.option("--networks", type=int, default=20, show_default=True)
@click.option("--space", type=click.Choice(space_names()), default="tss", show_default=True)
@click.option("--dataset", default="cifar10", show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--trees", type=int, default=200, show_default=True, help="Random trees for the evaluation rate.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--data-dir", default=None)
@click.option("--cpu-watts-per-core", type=float, default=DEFAULT_CPU_WATTS_PER_CORE, show_default=True,
              help="For the CPU-time estimate when no NVML/RAPL counter is readable.")
def main(networks, space, dataset, batch_size, trees, device, data_dir, cpu_watts_per_core):
    data = resolve_data_dir(data_dir)
    truth = load_space_truth(data, space)
    indices = sample_indices(truth, dataset, networks, "random", seed=123)
    settings = probe_settings(space, dataset, batch_size, 0, device)
    items = [(i, truth.arch(i)) for i in indices]
    click.echo(f"device={device} threads={torch.get_num_threads()} space={space} dataset={dataset} "
               f"networks={networks} batch={batch_size}")

    images, labels = probe_batch(str(data), dataset, batch_size, 0)
    images, labels = images.to(device), labels.to(device)
    warm = init_network(space, items[0][1], dataset, 0, items[0][0]).to(device)
    time_forward_backward(warm, images, labels)  # first-call overheads out of the measurement
    meter = make_meter(device, cpu_watts_per_core)
    t0 = time.perf_counter()
    probes = probe_sample(items, settings, data, meter=meter)
    probe_wall = time.perf_counter() - t0
    joules: dict[int, float] = {}
    for p in meter.passes:
        joules[p.index] = joules.get(p.index, 0.0) + p.joules
    per_net_j = [joules.get(p.index, 0.0) for p in probes]
    plain = []
    for i, arch in items:
        net = init_network(space, arch, dataset, 0, i).to(device)
        time_forward_backward(net, images, labels)
        plain.append(time_forward_backward(net, images, labels))
    per_net = [p.seconds for p in probes]
    click.echo(f"probe_seconds_per_network mean={statistics.fmean(per_net):.3f} median={statistics.median(per_net):.3f} "
               f"max={max(per_net):.3f} (wall {probe_wall:.1f} s for {networks})")
    click.echo(f"probe_joules_per_network mean={statistics.fmean(per_net_j):.2f} median={statistics.median(per_net_j):.2f} "
               f"max={max(per_net_j):.2f} (total {format_joules(sum(per_net_j))}; {meter.describe()}: {meter.detail or 'ok'})")
    click.echo(f"forward_backward_seconds_per_network mean={statistics.fmean(plain):.3f}")
    click.echo(f"probe_to_forward_backward_ratio={sum(per_net) / sum(plain):.2f}")
    mb = [p.nbytes() / 1e6 for p in probes]
    click.echo(f"probe_megabytes_per_network mean={statistics.fmean(mb):.1f} max={max(mb):.1f}")

    batch = ProbeBatch(probes, device=device)
    random.seed(0)
    pset = primitive_set()
    pool = [classic_tokens(n) for n in classic_names()]
    pool += [tree_tokens(gp.PrimitiveTree(gp.genHalfAndHalf(pset, 2, 5))) for _ in range(trees)]
    t0 = time.perf_counter()
    for tokens in pool:
        batch.memo.clear()  # honest rate: no subtree reuse between trees
        evaluate(tokens, batch)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    click.echo(f"tree_evaluations_per_second={len(pool) / dt:.1f} (on {networks} cached networks, "
               f"{len(pool) / dt * networks:.0f} network-scores/s)")


if __name__ == "__main__":
    main()
