"""``make bench-scale``: how probing and tree evaluation scale with workers, on each executor.

    python -m greenmachine.bench_scale [--networks 16] [--trees 100] [--batch-size 64] [--workers 1,2]
                                       [--executors serial,process,ray] [--out results/bench-scale.csv]

For every executor and worker count (serial: 1 only) the same random TSS networks are probed (no cache) through
the executor, then the same population of random trees (plus the classic trees) is scored on them through the
sample-sharded fitness of :mod:`greenmachine.search.shards`, in one round, as one generation would be. Reported:
probes per second, tree evaluations per second (a tree scored on every network), the speed-up over one worker of
the same executor, the peak resident memory of the driver and of the largest shard worker, the megabytes of
terminals each shard holds, and the probe time (the sum of the networks' probe seconds, where they ran) over a
plain train-mode forward+backward of the same networks measured here on one thread.

Each configuration runs in its own Python process (a clean peak RSS, and a fresh local Ray instance of
``workers`` CPUs), with torch on one thread per process: one worker is one core, so the speed-up is the parallel
speed-up and not torch's intra-op threading. Ray's start-up and the process pools' fork are not timed. Timings
are those of this machine at the time of the run: on a machine other jobs share, they say little.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click

FIELDS = ["executor", "workers", "networks", "trees", "shards", "probe_wall_s", "probes_per_s", "probe_speedup",
          "eval_wall_s", "tree_evals_per_s", "eval_speedup", "probe_over_forward_backward", "driver_peak_rss_mb",
          "worker_peak_rss_mb", "shard_terminals_mb"]


def _trees(count: int, seed: int) -> list[str]:
    from deap import gp

    from greenmachine.proxies.classic import classic_names, classic_tokens
    from greenmachine.proxies.primitives import primitive_set, tree_tokens

    random.seed(seed)
    pset = primitive_set()
    keys = [" ".join(classic_tokens(n)) for n in classic_names()]
    while len(keys) < count:
        key = " ".join(tree_tokens(gp.PrimitiveTree(gp.genHalfAndHalf(pset, 2, 5))))
        if key not in keys:
            keys.append(key)
    return keys[:count]


def run_one(kind: str, workers: int, networks: int, trees: int, batch_size: int, data_dir: str | None,
            seed: int = 123) -> dict:
    """One configuration, in this process: probe, build the shards, score the trees; a row of FIELDS."""
    from greenmachine.executor import ProcessExecutor, RayExecutor, SerialExecutor, set_torch_threads
    from greenmachine.probing.cache import ProbeCache, probe_sample
    from greenmachine.search.shards import ShardedFitness, peak_rss
    from greenmachine.spaces.sampling import sample_indices
    from greenmachine.workspace import load_space_truth, probe_settings, resolve_data_dir

    set_torch_threads(1)
    data = resolve_data_dir(data_dir)
    truth = load_space_truth(data, "tss")
    indices = sample_indices(truth, "cifar10", networks, "random", seed=seed)
    items = [(i, truth.arch(i)) for i in indices]
    settings = probe_settings("tss", "cifar10", batch_size, 0, "cpu", data_dir=data)
    keys = _trees(trees, seed)
    if kind == "serial":
        executor = SerialExecutor()
    elif kind == "process":
        executor = ProcessExecutor(workers)
    else:
        executor = RayExecutor(workers)
    try:
        t0 = time.perf_counter()
        probes = probe_sample(items, settings, data, cache=ProbeCache(None), executor=executor)
        probe_wall = time.perf_counter() - t0
        probe_seconds = sum(p.seconds for p in probes)
        # two shards' worth of chunks whatever the worker count, so that every row scores the same chunks
        fitness = ShardedFitness(probes, truth.acc("cifar10", indices), executor, chunk=math.ceil(networks / 2))
        del probes
        t0 = time.perf_counter()
        fitness.scores(keys)
        eval_wall = time.perf_counter() - t0
        shard_mb = max(fitness.nbytes()) / 1e6
        worker_rss = max(fitness.peak_rss()) / 1e6
        shards = fitness.shards
        fitness.close()
    finally:
        executor.close()
    return {"executor": kind, "workers": workers, "networks": networks, "trees": len(keys), "shards": shards,
            "probe_wall_s": round(probe_wall, 3), "probes_per_s": round(networks / probe_wall, 3),
            "eval_wall_s": round(eval_wall, 3), "tree_evals_per_s": round(len(keys) / eval_wall, 2),
            "probe_seconds": probe_seconds, "driver_peak_rss_mb": round(peak_rss() / 1e6, 1),
            "worker_peak_rss_mb": round(worker_rss, 1), "shard_terminals_mb": round(shard_mb, 1)}


def forward_backward_seconds(networks: int, batch_size: int, data_dir: str | None, seed: int = 123) -> float:
    """Sum over the networks of one plain train-mode forward+backward (after a warm-up one), on one thread."""
    from greenmachine.executor import set_torch_threads
    from greenmachine.probing.datasets import probe_batch
    from greenmachine.probing.probe import init_network, time_forward_backward
    from greenmachine.spaces.sampling import sample_indices
    from greenmachine.workspace import load_space_truth, resolve_data_dir

    set_torch_threads(1)
    data = resolve_data_dir(data_dir)
    truth = load_space_truth(data, "tss")
    images, labels = probe_batch(str(data), "cifar10", batch_size, 0)
    total = 0.0
    for i in sample_indices(truth, "cifar10", networks, "random", seed=seed):
        net = init_network("tss", truth.arch(i), "cifar10", 0, i)
        time_forward_backward(net, images, labels)
        total += time_forward_backward(net, images, labels)
    return total


def _child(args: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GREENMACHINE_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "greenmachine.bench_scale", *args], capture_output=True, text=True,
                         env=env)
    if res.returncode != 0:
        tail = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise click.ClickException(f"bench-scale {' '.join(args)} failed: {tail}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _table(rows: list[dict]) -> str:
    head = ["executor", "workers", "probes/s", "speed-up", "tree evals/s", "speed-up", "probe / fwd+bwd",
            "driver RSS MB", "worker RSS MB", "shard MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["executor"], r["workers"], f"{r['probes_per_s']:.2f}", f"{r['probe_speedup']:.2f}x",
                 f"{r['tree_evals_per_s']:.1f}", f"{r['eval_speedup']:.2f}x", f"{r['probe_over_forward_backward']:.2f}",
                 f"{r['driver_peak_rss_mb']:.0f}", f"{r['worker_peak_rss_mb']:.0f}", f"{r['shard_terminals_mb']:.0f}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


@click.command()
@click.option("--networks", type=click.IntRange(2, 10_000), default=16, show_default=True)
@click.option("--trees", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--batch-size", type=click.IntRange(2, 1024), default=64, show_default=True)
@click.option("--workers", "workers_list", default="1,2", show_default=True, help="Worker counts to compare.")
@click.option("--executors", default="serial,process,ray", show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default="results/bench-scale.csv",
              show_default=True)
@click.option("--data-dir", default=None)
@click.option("--one", nargs=2, default=None, hidden=True, help="Internal: run one KIND WORKERS configuration.")
def main(networks, trees, batch_size, workers_list, executors, out_path, data_dir, one):
    if one is not None:
        row = run_one(one[0], int(one[1]), networks, trees, batch_size, data_dir)
        click.echo(json.dumps(row))
        return
    try:
        counts = sorted({int(w) for w in workers_list.split(",") if w.strip()})
    except ValueError:
        raise click.BadParameter(f"expected a comma-separated list of integers, got {workers_list!r}",
                                 param_hint="--workers") from None
    kinds = [k.strip() for k in executors.split(",") if k.strip()]
    unknown = sorted(set(kinds) - {"serial", "process", "ray"})
    if unknown or not counts or min(counts) < 1:
        raise click.BadParameter(f"executors must be serial, process, ray and workers >= 1 (got {executors!r}, "
                                 f"{workers_list!r})")
    common = ["--networks", str(networks), "--trees", str(trees), "--batch-size", str(batch_size)]
    if data_dir:
        common += ["--data-dir", data_dir]
    click.echo(f"bench-scale: {networks} random TSS networks (CIFAR-10, batch {batch_size}), {trees} trees, "
               f"one thread per process, {os.cpu_count()} CPUs here")
    fb_seconds = forward_backward_seconds(networks, batch_size, data_dir)
    rows: list[dict] = []
    for kind in kinds:
        for w in ([1] if kind == "serial" else counts):
            click.echo(f"  {kind} x{w} ...", err=True)
            row = _child([*common, "--one", kind, str(w)])
            row["probe_over_forward_backward"] = round(row.pop("probe_seconds") / fb_seconds, 3)
            rows.append(row)
    for row in rows:
        base = next(r for r in rows if r["executor"] == row["executor"] and r["workers"] == min(
            x["workers"] for x in rows if x["executor"] == row["executor"]))
        row["probe_speedup"] = round(row["probes_per_s"] / base["probes_per_s"], 3)
        row["eval_speedup"] = round(row["tree_evals_per_s"] / base["tree_evals_per_s"], 3)
    click.echo(_table(rows))
    click.echo(f"plain forward+backward: {fb_seconds / networks:.3f} s per network (one thread); "
               f"median probe/forward+backward {statistics.median(r['probe_over_forward_backward'] for r in rows):.2f}")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for row in rows:
            w.writerow({k: row[k] for k in FIELDS})
    click.echo(f"csv={out}")


if __name__ == "__main__":
    main()
