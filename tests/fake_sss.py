"""An official-format SSS directory for tests, written with nats_bench's own classes.

No full SSS file exists on these machines, so the tests take the real meta file (all 32,768 channel strings) and
one real record, and write records for a random set of indices whose final test accuracies follow the network's
capacity plus noise (a synthetic but learnable ground truth).
"""

from __future__ import annotations

import copy
import shutil
from collections import OrderedDict
from pathlib import Path

import numpy as np
from nats_bench.api_utils import ArchResults, pickle_load, pickle_save

from conftest import SSS_OFFICIAL
from greenmachine.spaces.sss import sss_archs


def build_fake_sss(dest: Path, n: int, seed: int = 0) -> list[int]:
    dest.mkdir(parents=True)
    shutil.copy(SSS_OFFICIAL / "meta.pickle.pbz2", dest / "meta.pickle.pbz2")
    template = pickle_load(str(SSS_OFFICIAL / "000011.pickle.pbz2"))
    rng = np.random.default_rng(seed)
    indices = sorted(int(i) for i in rng.choice(len(sss_archs()), size=n, replace=False))
    for i in indices:
        arch = sss_archs()[i]
        capacity = np.log2(sum(int(c) for c in arch.split(":")) / 40.0)
        record = OrderedDict()
        for hp, state in template.items():
            results = ArchResults.create_from_state_dict(copy.deepcopy(state))
            results.arch_index, results.arch_str = i, arch
            for rc in results.all_results.values():
                target = 85.0 + 3.0 * capacity + rng.normal(0, 0.5)
                for name in rc.eval_names:
                    delta = target - rc.eval_acc1es[f"{name}@{rc.epochs - 1}"]
                    for key in [k for k in rc.eval_acc1es if k.startswith(name + "@")]:
                        rc.eval_acc1es[key] += delta
            record[hp] = results.state_dict()
        pickle_save(record, str(dest / f"{i:06d}.pickle"))
    return indices


def data_dir_with_sss(root: Path, real_data: Path, n: int) -> tuple[Path, list[int]]:
    """A data folder: the real images, and a fake full SSS benchmark directory."""
    (root / "nats").mkdir(parents=True)
    (root / "images").symlink_to(real_data / "images")
    indices = build_fake_sss(root / "nats" / "NATS-sss-v1_0-50262-simple", n)
    return root, indices
