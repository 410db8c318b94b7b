"""A published setting end to end: evolve with its config, then score the best proxy on a disjoint sample.

``make reproduce-<setting>`` calls this through ``greenmachine reproduce``; a stopped run resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path

from greenmachine.probing.cache import ProbeCache
from greenmachine.proxies.comparison import compare, scatter_figure, write_summary
from greenmachine.config import EvolveConfig
from greenmachine.search.engine import CHECKPOINT
from greenmachine.search.proxy_gp import run_evolution
from greenmachine.proxies.proxyfile import load_proxy
from greenmachine.report import summary_path, write_score_summary
from greenmachine.spaces.sampling import sample_indices
from greenmachine.proxies.scoring import ScoreResult, score_tokens, write_scores_csv
from greenmachine.ui import Reporter
from greenmachine.workspace import load_space_truth, proxy_protocol


def reproduce(config: EvolveConfig, data_dir: Path, out_dir: Path, cache: ProbeCache, reporter: Reporter) -> ScoreResult:
    config = config.validate()
    truth = load_space_truth(data_dir, config.space, reporter)
    resume = (out_dir / CHECKPOINT).is_file()
    result = run_evolution(config, truth, data_dir, out_dir, cache=cache, resume=resume, reporter=reporter)
    proxy = load_proxy(out_dir / "proxy.json")
    held_out = sample_indices(truth, config.dataset, config.eval_sample_size, config.eval_sampling,
                              seed=config.seed + 1, exclude=result.sample_indices, strata=config.strata)
    # held out under the protocol the proxy was evolved with (its spectrum images and initialisations included)
    settings, inits = proxy_protocol(proxy, config.space, config.dataset, config.device)
    scores = score_tokens(proxy.tokens, truth, config.dataset, held_out, settings, data_dir, cache=cache,
                          reporter=reporter, inits=inits)
    write_scores_csv(scores, out_dir / "scores.csv")
    write_score_summary(scores, out_dir / "proxy.json", config.space, config.dataset, config.eval_sampling,
                        config.seed + 1, summary_path(out_dir / "scores.csv"),
                        extra={"inits": inits, "spectrum_images": settings.spectrum_images})
    if config.eval_baselines:  # the same held-out networks, images and seeds, for the baselines row
        comparison = compare(truth, config.dataset, held_out, settings, data_dir, evolved={"evolved": proxy},
                             out_csv=out_dir / "baselines.csv", cache=cache, reporter=reporter, inits=inits)
        meta = {"space": config.space, "dataset": config.dataset, "sampling": config.eval_sampling,
                "seed": config.seed + 1, "batch_size": settings.batch_size, "probe_seed": settings.batch_seed,
                "inits": inits, "spectrum_images": settings.spectrum_images}
        write_summary(comparison, summary_path(out_dir / "baselines.csv"), meta)
        scatter_figure(comparison, out_dir / "baselines.png", f"{config.space} / {config.dataset}, held out")
    return scores
