"""`make quality`: how good evolved proxies are, over evolution seeds, on architectures no seed evolved on.

For every setting (a space and a dataset) the pipeline

1. evolves one proxy per seed ``0..seeds-1`` (the evolve code path, :func:`~greenmachine.search.proxy_gp.run_evolution`,
   with the space's own defaults and the overrides given) into ``<out>/<space>-<dataset>/seed-<k>/``; with
   ``select`` K > 1, K evolutions per seed (evolution seeds kK..kK+K-1) into ``seed-<k>/run-<m>/``, and the tree
   ``greenmachine select`` chooses among them (:mod:`~greenmachine.search.selection`) into ``seed-<k>/proxy.json``
   and ``seed-<k>/selection.csv``; that file counts all K samples as seen, so step 2 keeps them all out;
2. draws ONE held-out random sample (``heldout`` architectures, seed ``heldout_seed``) disjoint from the evolution
   samples of ALL the seeds, written to ``<out>/<space>-<dataset>/heldout.json``;
3. scores every seed's proxy on it (the score code path, :func:`~greenmachine.proxies.scoring.score_tokens`) into
   ``seed-<k>/heldout_scores.csv`` and its ``.summary.json``;
4. scores the baselines (default ``params``, ``synflow``, ``naswot``, ``meco``; the baselines code path,
   :func:`~greenmachine.proxies.comparison.compare`) on the same architectures into ``baselines.csv`` and its
   ``.summary.json``;
5. with ``transfer`` (the default), once every setting is done: scores every seed's proxy on the held-out sample of
   each OTHER dataset of the same space (minus that proxy's own evolution sample, so the architectures stay
   unseen), into ``<out>/<space>-<dst>/transfer/from-<src>-seed-<k>.csv`` and its ``.summary.json``;
6. writes the markdown table (setting | evolved mean +- std over seeds | each seed | baselines | expressions), one
   transfer table per space with two or more datasets (evolved on x scored on, mean +- std over seeds; the
   diagonal is step 3), and a CSV with one row per proxy, setting and (for transfer) source dataset.

Why one held-out sample and one probe protocol for everything of a setting: the seeds and the baselines are then
compared on identical inputs (the same networks, the same minibatch, the same initialisation: batch size of the
config, probe seed ``heldout_probe_seed``), so the spread over seeds is the spread of the evolved trees, not of
minibatch draws; and the probe cache serves every seed's proxy and every pass once.

Every step leaves its files before the next starts, and a step whose files are complete (and whose held-out
indices match) is skipped, so a stopped ``make quality`` resumes where it stopped: an evolution continues from its
checkpoint, a held-out scoring or baseline step that was cut short is run again (its probes come from the cache).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from greenmachine.config import EvolveConfig, load_config
from greenmachine.errors import GreenmachineError
from greenmachine.files import atomic_open, write_text_atomic
from greenmachine.probing.cache import ProbeCache
from greenmachine.probing.probe import check_inits, check_spectrum_images
from greenmachine.ui import Reporter

if TYPE_CHECKING:
    from greenmachine.proxies.proxyfile import Proxy
    from greenmachine.spaces.truth import GroundTruth

DEFAULT_SETTINGS = ("tss/cifar10", "tss/cifar100", "tss/ImageNet16-120", "sss/cifar10", "sss/cifar100")
DEFAULT_BASELINES = ("params", "synflow", "naswot", "meco")
SCORES = "heldout_scores.csv"
SCORES_SUMMARY = "heldout_scores.summary.json"
BASELINES = "baselines.csv"
BASELINES_SUMMARY = "baselines.summary.json"
HELDOUT = "heldout.json"
TRANSFER = "transfer"


@dataclass(frozen=True)
class QualityPlan:
    """What `make quality` runs: settings, seeds, held-out size, the evolution config and its overrides."""

    settings: tuple[tuple[str, str], ...] = tuple(tuple(s.split("/")) for s in DEFAULT_SETTINGS)  # type: ignore[misc]
    seeds: int = 3
    heldout: int = 2000
    heldout_seed: int = 1  # the seed of the held-out draw (score's default sample seed)
    heldout_probe_seed: int = 0  # minibatch and initialisation of every held-out probe of a setting
    # held-out (and transfer) scores are the mean over this many initialisations and minibatches, probe seeds
    # heldout_probe_seed.. (probing.probe.init_protocols); the evolutions are not changed by it
    heldout_inits: int = 1
    # the evolved proxies' corr_eig on the held-out (and transfer) samples: the mean of the first K images' spectra
    # (probing.probe.ProbeSettings.spectrum_images); the baselines and the evolutions are not changed by it
    heldout_spectrum_images: int = 1
    baselines: tuple[str, ...] = DEFAULT_BASELINES
    config_path: str | None = None  # a TOML evolve config; None = the package defaults and the space's own
    overrides: dict[str, Any] = field(default_factory=dict)  # population, generations, sample_size, sampling, batch_size, structural, jacobian, ntk, swap
    device: str = "cpu"
    # score every seed's proxy on the held-out samples of the plan's other datasets of the same space (transfer)
    transfer: bool = True
    # each seed k of the table is the tree `select` chooses among this many evolutions (seeds kK..kK+K-1, in
    # seed-<k>/run-<m>/); 1 = one evolution per seed, seed-<k>/ itself
    select: int = 1

    def validate(self) -> "QualityPlan":
        from greenmachine.config import check_seed
        from greenmachine.proxies.comparison import check_proxy_names

        if not self.settings:
            raise GreenmachineError("quality: no setting to run")
        if len(set(self.settings)) != len(self.settings):
            raise GreenmachineError("quality: a setting is named twice")
        if not 1 <= self.seeds <= 100:
            raise GreenmachineError(f"quality: seeds must be between 1 and 100, got {self.seeds}")
        if not 1 <= self.select <= 20:
            raise GreenmachineError(f"quality: select must be between 1 and 20 runs per seed, got {self.select}")
        if self.heldout < 2:
            raise GreenmachineError(f"quality: the held-out sample needs at least 2 architectures, got {self.heldout}")
        check_seed(self.heldout_seed, "the held-out seed")
        check_seed(self.heldout_probe_seed, "the held-out probe seed")
        check_inits(self.heldout_inits)
        check_proxy_names(list(self.baselines))
        for space, dataset in self.settings:  # every setting's config validates before any work
            check_spectrum_images(self.heldout_spectrum_images, self.evolve_config(space, dataset, 0).batch_size)
        return self

    def evolve_config(self, space: str, dataset: str, seed: int) -> EvolveConfig:
        base = load_config(self.config_path, space=space)
        if base.datasets:
            raise GreenmachineError("quality evolves one proxy per dataset: the config must not set datasets")
        return base.override(space=space, dataset=dataset, seed=seed, device=self.device, **self.overrides).validate()


def parse_settings(text: str) -> tuple[tuple[str, str], ...]:
    """``"tss/cifar10,sss/cifar100"`` (commas or spaces) as (space, dataset) pairs, each checked (one line)."""
    from greenmachine.probing.datasets import check_dataset
    from greenmachine.spaces import get_space

    out = []
    for item in text.replace(",", " ").split():
        space, sep, dataset = item.partition("/")
        if not sep or not space or not dataset:
            raise GreenmachineError(f"quality: setting {item[:60]!r} is not SPACE/DATASET (e.g. tss/cifar10)")
        check_dataset(dataset)
        get_space(space).check_dataset(dataset)
        out.append((space, dataset))
    if not out:
        raise GreenmachineError(f"quality: --settings {text[:60]!r} names no setting")
    return tuple(out)


def mean_std(taus: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n-1) over the seeds with a finite tau; NaN where undefined."""
    finite = [t for t in taus if math.isfinite(t)]
    mean = statistics.fmean(finite) if finite else math.nan
    std = statistics.stdev(finite) if len(finite) >= 2 else math.nan
    return mean, std


@dataclass
class SettingResult:
    """One row of the table: a setting's held-out taus per seed and per baseline, and the seeds' expressions."""

    space: str
    dataset: str
    heldout: int
    seed_taus: list[float]
    seed_rhos: list[float]
    expressions: list[str]
    evolution_fitness: list[float]
    baselines: dict[str, dict[str, Any]]  # name -> kendall_tau, spearman_rho, valid

    @property
    def name(self) -> str:
        return f"{self.space}/{self.dataset}"

    def mean_std(self) -> tuple[float, float]:
        return mean_std(self.seed_taus)


def setting_dir(out_root: Path, space: str, dataset: str) -> Path:
    return Path(out_root) / f"{space}-{dataset}"


def _csv_indices(path: Path) -> list[int] | None:
    """The index column of a scores or baselines CSV (None when missing or unreadable: the step runs again)."""
    try:
        with open(path, newline="") as f:
            return [int(row["index"]) for row in csv.DictReader(f)]
    except (OSError, KeyError, ValueError, TypeError):
        return None


def _done(csv_path: Path, summary: Path, indices: list[int], expression: str | None = None, inits: int = 1,
          spectrum_images: int = 1) -> bool:
    """A step is complete when its summary exists, its CSV holds exactly the held-out architectures, it averaged
    over ``inits`` initialisations and ``spectrum_images`` images' spectra (a summary without the field: one) and
    (for an evolved proxy) it scored the tree the run folder's proxy.json holds now: an evolution resumed with more
    generations may have found another tree, whose held-out score must then be measured again."""
    if not summary.is_file() or _csv_indices(csv_path) != indices:
        return False
    try:
        recorded = json.loads(summary.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict) or recorded.get("inits", 1) != inits \
            or recorded.get("spectrum_images", 1) != spectrum_images:
        return False
    return expression is None or recorded.get("expression") == expression


def _summary_names(path: Path) -> set[str]:
    """The proxies a baselines summary holds (a run asking for another baseline scores them all again)."""
    try:
        return {str(e["name"]) for e in json.loads(path.read_text())["proxies"]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def run_setting(plan: QualityPlan, space: str, dataset: str, data_dir: Path, out_root: Path, cache: ProbeCache,
                reporter: Reporter, truth: GroundTruth) -> SettingResult:
    """Every step of one setting (see the module docstring); each skipped when its files are complete."""
    from greenmachine.proxies.comparison import compare, write_summary
    from greenmachine.proxies.proxyfile import load_proxy
    from greenmachine.proxies.scoring import score_tokens, write_scores_csv
    from greenmachine.report import write_score_summary
    from greenmachine.search.engine import CHECKPOINT
    from greenmachine.search.proxy_gp import evolution_finished, run_evolution
    from greenmachine.spaces.sampling import sample_indices
    from greenmachine.workspace import probe_settings

    folder = setting_dir(out_root, space, dataset)
    configs = [plan.evolve_config(space, dataset, k) for k in range(plan.seeds * plan.select)]

    def evolved(config: EvolveConfig, run: Path) -> Path:
        if not evolution_finished(config, truth, run):  # a finished run is not set up (its sample probed) again
            run_evolution(config, truth, data_dir, run, cache=cache, resume=(run / CHECKPOINT).is_file(),
                          reporter=reporter)
        return run / "proxy.json"

    # 1. evolution, one run folder per seed (resumed from its checkpoint when there is one); with select K, K runs
    # per seed and the tree select chooses among them
    proxies = []
    for k in range(plan.seeds):
        run = folder / f"seed-{k}"
        if plan.select == 1:
            proxies.append(load_proxy(evolved(configs[k], run)))
            continue
        if (run / CHECKPOINT).is_file():
            raise GreenmachineError(f"{run} holds a single evolution (a quality run without --select); choose "
                                    f"another --out")
        paths = [evolved(configs[k * plan.select + m], run / f"run-{m}") for m in range(plan.select)]
        proxies.append(_selected(paths, run, truth, data_dir, cache, reporter, plan.device))
    # 2. one held-out sample, outside every seed's evolution sample
    exclude = sorted({i for p in proxies for i in p.sample_indices})
    held_out = sample_indices(truth, dataset, plan.heldout, "random", seed=plan.heldout_seed, exclude=exclude)
    record = {"space": space, "dataset": dataset, "sampling": "random", "seed": plan.heldout_seed,
              "probe_seed": plan.heldout_probe_seed, "batch_size": configs[0].batch_size,
              "excluded": len(exclude), "indices": held_out}
    heldout_file = folder / HELDOUT
    if heldout_file.is_file():
        previous = json.loads(heldout_file.read_text())
        if previous != record:
            raise GreenmachineError(f"{heldout_file} holds another held-out sample (other sizes or seeds than this "
                                    f"run's); remove {folder} or choose another --out")
    else:
        write_text_atomic(heldout_file, json.dumps(record) + "\n")
    settings = probe_settings(space, dataset, configs[0].batch_size, plan.heldout_probe_seed, plan.device,
                              data_dir=data_dir, spectrum_images=plan.heldout_spectrum_images)
    # 3. every seed's proxy on the held-out sample
    taus, rhos = [], []
    for k, proxy in enumerate(proxies):
        run = folder / f"seed-{k}"
        if not _done(run / SCORES, run / SCORES_SUMMARY, held_out, proxy.expression, plan.heldout_inits,
                     plan.heldout_spectrum_images):
            result = score_tokens(proxy.tokens, truth, dataset, held_out, settings, data_dir, cache=cache,
                                  reporter=reporter, inits=plan.heldout_inits)
            write_scores_csv(result, run / SCORES)
            write_score_summary(result, run / "proxy.json", space, dataset, "random", plan.heldout_seed,
                                run / SCORES_SUMMARY,
                                extra={"expression": proxy.expression,  # which tree was scored (see _done)
                                       "probe_seed": plan.heldout_probe_seed, "batch_size": settings.batch_size,
                                       "inits": plan.heldout_inits,
                                       "spectrum_images": plan.heldout_spectrum_images})
        summary = json.loads((run / SCORES_SUMMARY).read_text())
        taus.append(_number(summary["kendall_tau"]))
        rhos.append(_number(summary["spearman_rho"]))
    # 4. the baselines on the same architectures, minibatch and initialisation
    if plan.baselines and not (_done(folder / BASELINES, folder / BASELINES_SUMMARY, held_out,
                                     inits=plan.heldout_inits)
                               and set(plan.baselines) <= _summary_names(folder / BASELINES_SUMMARY)):
        comparison = compare(truth, dataset, held_out, settings, data_dir, proxies=list(plan.baselines),
                             out_csv=folder / BASELINES, cache=cache, reporter=reporter, inits=plan.heldout_inits)
        meta = {"space": space, "dataset": dataset, "sampling": "random", "seed": plan.heldout_seed,
                "batch_size": settings.batch_size, "probe_seed": plan.heldout_probe_seed,
                "inits": plan.heldout_inits}
        write_summary(comparison, folder / BASELINES_SUMMARY, meta)
    baselines: dict[str, dict[str, Any]] = {}
    if plan.baselines:
        found = {e["name"]: e for e in json.loads((folder / BASELINES_SUMMARY).read_text())["proxies"]}
        for name in plan.baselines:  # the plan's order, in the table and the CSV
            entry = found[name]
            baselines[name] = {"kendall_tau": _number(entry["kendall_tau"]),
                               "spearman_rho": _number(entry["spearman_rho"]), "valid": entry["valid"]}
    return SettingResult(space, dataset, len(held_out), taus, rhos, [p.expression for p in proxies],
                         [_number(p.fitness) for p in proxies], baselines)


def _selected(paths: list[Path], run: Path, truth: GroundTruth, data_dir: Path, cache: ProbeCache,
              reporter: Reporter, device: str) -> "Proxy":
    """seed-<k>/proxy.json: the tree `select` chooses among the seed's runs, chosen again when a run's tree changed
    (an evolution resumed with more generations); its sample_indices are all the runs' samples."""
    from greenmachine.proxies.proxyfile import load_proxy, save_proxy
    from greenmachine.search.selection import chosen_proxy, select_proxy, write_selection_csv

    candidates = {p.parent.name: load_proxy(p) for p in paths}
    target = run / "proxy.json"
    if target.is_file():
        try:
            record = json.loads(target.read_text()).get("selection", {})
            done = [(c["name"], c["expression"]) for c in record.get("candidates", [])] == \
                [(n, c.expression) for n, c in candidates.items()]
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            done = False
        if done:
            return load_proxy(target)
    selection = select_proxy(truth, candidates, data_dir, device, cache=cache, reporter=reporter)
    write_selection_csv(selection, candidates, run / "selection.csv")
    save_proxy(chosen_proxy(selection, candidates, paths), target)
    return load_proxy(target)


@dataclass
class TransferResult:
    """The seeds of ``source``'s proxies scored on ``target``'s held-out sample (same space)."""

    space: str
    source: str  # the dataset the proxies were evolved on
    target: str  # the dataset whose held-out sample and accuracies rank them
    heldout: list[int]  # architectures scored per seed (the target's held-out minus that seed's evolution sample)
    seed_taus: list[float]
    seed_rhos: list[float]

    def mean_std(self) -> tuple[float, float]:
        return mean_std(self.seed_taus)


def run_transfer(plan: QualityPlan, space: str, source: str, target: str, data_dir: Path, out_root: Path,
                 cache: ProbeCache, reporter: Reporter, truth: GroundTruth) -> TransferResult:
    """``source``'s seed proxies on ``target``'s held-out sample: the target's probe protocol (its images, its
    number of classes), each proxy's own evolution sample left out; a step whose files are complete is skipped."""
    from greenmachine.proxies.proxyfile import load_proxy
    from greenmachine.proxies.scoring import score_tokens, write_scores_csv
    from greenmachine.report import write_score_summary
    from greenmachine.workspace import probe_settings

    record = json.loads((setting_dir(out_root, space, target) / HELDOUT).read_text())
    settings = probe_settings(space, target, record["batch_size"], record["probe_seed"], plan.device,
                              data_dir=data_dir, spectrum_images=plan.heldout_spectrum_images)
    folder = setting_dir(out_root, space, target) / TRANSFER
    folder.mkdir(exist_ok=True)
    taus, rhos, sizes = [], [], []
    for k in range(plan.seeds):
        run = setting_dir(out_root, space, source) / f"seed-{k}"
        proxy = load_proxy(run / "proxy.json")
        seen = set(proxy.sample_indices)
        indices = [i for i in record["indices"] if i not in seen]
        csv_path, summary_path = folder / f"from-{source}-seed-{k}.csv", folder / f"from-{source}-seed-{k}.summary.json"
        if not _done(csv_path, summary_path, indices, proxy.expression, plan.heldout_inits,
                     plan.heldout_spectrum_images):
            result = score_tokens(proxy.tokens, truth, target, indices, settings, data_dir, cache=cache,
                                  reporter=reporter, inits=plan.heldout_inits)
            write_scores_csv(result, csv_path)
            write_score_summary(result, run / "proxy.json", space, target, "random", record["seed"], summary_path,
                                extra={"expression": proxy.expression, "evolved_on": source,
                                       "probe_seed": record["probe_seed"], "batch_size": settings.batch_size,
                                       "inits": plan.heldout_inits,
                                       "spectrum_images": plan.heldout_spectrum_images})
        summary = json.loads(summary_path.read_text())
        taus.append(_number(summary["kendall_tau"]))
        rhos.append(_number(summary["spearman_rho"]))
        sizes.append(len(indices))
    return TransferResult(space, source, target, sizes, taus, rhos)


def transfer_pairs(plan: QualityPlan) -> list[tuple[str, str, str]]:
    """(space, source, target) for every ordered pair of the plan's datasets within one space."""
    by_space: dict[str, list[str]] = {}
    for space, dataset in plan.settings:
        by_space.setdefault(space, []).append(dataset)
    return [(space, a, b) for space, names in by_space.items() for a in names for b in names if a != b]


def transfer_tables(results: Sequence[SettingResult], transfers: Sequence[TransferResult]) -> str:
    """One markdown table per space: rows the dataset a proxy was evolved on, columns the dataset it is scored on;
    each cell the held-out Kendall tau, mean ± std over the seeds (the diagonal is the setting's own row)."""
    out = []
    for space in dict.fromkeys(r.space for r in results):
        names = [r.dataset for r in results if r.space == space]
        if len(names) < 2:
            continue
        cell = {(r.dataset, r.dataset): r.mean_std() for r in results if r.space == space}
        cell.update({(t.source, t.target): t.mean_std() for t in transfers if t.space == space})
        lines = [f"Transfer, {space}: held-out Kendall tau (mean ± std over seeds) of the proxies evolved on the row's "
                 "dataset, scored on the column's held-out sample (without the proxy's own evolution sample).", "",
                 "| evolved on (row) / scored on (column) | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
        for a in names:
            row = []
            for b in names:
                mean, std = cell.get((a, b), (math.nan, math.nan))
                text = f"{_fmt(mean)} ± {_fmt(std)}"
                row.append(f"**{text}**" if a == b else text)
            lines.append(f"| {a} | " + " | ".join(row) + " |")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _fmt(x: float, digits: int = 3) -> str:
    return "—" if not math.isfinite(x) else f"{x:.{digits}f}"


def markdown_table(results: Sequence[SettingResult], plan: QualityPlan) -> str:
    """The table of results/quality.md: one row per setting."""
    seeds = plan.seeds
    head = (["setting", "held-out archs", "evolved (mean ± std)"] + [f"seed {k}" for k in range(seeds)]
            + list(plan.baselines) + ["evolved expressions"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        mean, std = r.mean_std()
        cells = [r.name, str(r.heldout), f"{_fmt(mean)} ± {_fmt(std)}", *(_fmt(t) for t in r.seed_taus),
                 *(_fmt(r.baselines[b]["kendall_tau"]) for b in plan.baselines),
                 "<br>".join(f"{k}: `{e}`" for k, e in enumerate(r.expressions))]
        lines.append("| " + " | ".join(cells) + " |")
    overrides = ", ".join(f"{k} {v}" for k, v in sorted(plan.overrides.items())) or "none"
    notes = [
        "",
        f"Held-out Kendall tau against NATS-Bench test accuracy, {seeds} evolution seed(s) (0..{seeds - 1}) per "
        "setting; mean ± sample standard deviation (n-1) over the seeds. Per setting, one random held-out sample "
        f"(seed {plan.heldout_seed}) disjoint from every seed's evolution sample, the same networks, minibatch and "
        f"initialisation (probe seed {plan.heldout_probe_seed}) for every seed and every baseline."
        + (f" Every score is the mean over {plan.heldout_inits} initialisations and minibatches (probe seeds "
           f"{plan.heldout_probe_seed}..{plan.heldout_probe_seed + plan.heldout_inits - 1})."
           if plan.heldout_inits > 1 else "")
        + (f" Each seed k is the tree `select` chose among {plan.select} evolutions (evolution seeds "
           f"{plan.select}k..{plan.select}k+{plan.select - 1}: its mean Kendall tau on the other runs' evolution "
           "samples); the held-out sample avoids all of their samples." if plan.select > 1 else "")
        + (f" The evolved proxies' correlation spectra are the mean over the first {plan.heldout_spectrum_images} "
           "images of the minibatch." if plan.heldout_spectrum_images > 1 else ""),
        f"Evolution config: {plan.config_path or 'package defaults and the space defaults'}; overrides: {overrides}.",
    ]
    return "\n".join(lines + notes) + "\n"


CSV_FIELDS = ["setting", "space", "dataset", "kind", "proxy", "evolved_on", "heldout", "kendall_tau", "spearman_rho",
              "evolution_fitness", "expression"]


def write_csv(results: Sequence[SettingResult], path: Path, transfers: Sequence[TransferResult] = ()) -> None:
    """One row per proxy and setting (each seed's evolved proxy, each baseline, each seed's proxy scored on another
    dataset of its space: kind ``transfer``), full precision."""
    with atomic_open(path, newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in results:
            for k, (tau, rho, expr, fit) in enumerate(zip(r.seed_taus, r.seed_rhos, r.expressions,
                                                          r.evolution_fitness)):
                w.writerow({"setting": r.name, "space": r.space, "dataset": r.dataset, "kind": "evolved",
                            "proxy": f"seed-{k}", "evolved_on": r.dataset, "heldout": r.heldout, "kendall_tau": repr(tau),
                            "spearman_rho": repr(rho), "evolution_fitness": repr(fit), "expression": expr})
            for name, b in r.baselines.items():
                w.writerow({"setting": r.name, "space": r.space, "dataset": r.dataset, "kind": "baseline",
                            "proxy": name, "heldout": r.heldout, "kendall_tau": repr(b["kendall_tau"]),
                            "spearman_rho": repr(b["spearman_rho"]), "evolution_fitness": "", "expression": ""})
        expressions = {r.name: r.expressions for r in results}
        fitness = {r.name: r.evolution_fitness for r in results}
        for t in transfers:
            source = f"{t.space}/{t.source}"
            for k, (tau, rho, n) in enumerate(zip(t.seed_taus, t.seed_rhos, t.heldout)):
                w.writerow({"setting": f"{t.space}/{t.target}", "space": t.space, "dataset": t.target,
                            "kind": "transfer", "proxy": f"seed-{k}", "evolved_on": t.source, "heldout": n,
                            "kendall_tau": repr(tau), "spearman_rho": repr(rho),
                            "evolution_fitness": repr(fitness[source][k]), "expression": expressions[source][k]})


def run_quality(plan: QualityPlan, data_dir: Path, out_root: Path, table: Path, cache: ProbeCache,
                reporter: Reporter | None = None) -> list[SettingResult]:
    """Every setting in turn, then the table (``table``) and the CSV beside it (``.csv``)."""
    plan = plan.validate()
    reporter = reporter or Reporter(quiet=True)
    from greenmachine.workspace import load_space_truth

    # one ground truth per space, read once for its settings and its transfer pairs
    spaces = dict.fromkeys(space for space, _ in plan.settings)
    truths = {space: load_space_truth(Path(data_dir), space, reporter) for space in spaces}
    results = [run_setting(plan, space, dataset, Path(data_dir), Path(out_root), cache, reporter, truths[space])
               for space, dataset in plan.settings]
    transfers = [run_transfer(plan, space, a, b, Path(data_dir), Path(out_root), cache, reporter, truths[space])
                 for space, a, b in (transfer_pairs(plan) if plan.transfer else [])]
    table = Path(table)
    table.parent.mkdir(parents=True, exist_ok=True)
    text = markdown_table(results, plan)
    if transfers:
        text += "\n" + transfer_tables(results, transfers)
    write_text_atomic(table, text)
    write_csv(results, table.with_suffix(".csv"), transfers)
    return results
