"""What the two NATS-Bench spaces (TSS, SSS) share: xautodl networks, the hp they are read at, and where their
ground truth lives (the compact table ``nats/<space>-hp<hp>.csv`` first, else an official ``NATS-...-simple``
directory in ``nats/`` or one folder below it)."""

from __future__ import annotations

from pathlib import Path

from greenmachine.errors import GreenmachineError
from greenmachine.spaces.base import Progress, SearchSpace


class NatsSpace(SearchSpace):
    """Base of the NATS-Bench spaces; a subclass sets ``name``, ``nats_name``, ``hp``, ``official_glob``."""

    datasets = ("cifar10", "cifar100", "ImageNet16-120")
    #: the name ``nats_bench.create`` knows the space by
    nats_name: str
    #: the training schedule whose accuracy is the ground truth (``get_more_info(..., hp=...)``)
    hp: str
    official_glob: str

    def net_config(self, arch: str, dataset: str) -> dict:
        """The xautodl config that NATS-Bench's ``get_net_config`` returns for this architecture."""
        raise NotImplementedError

    def build_network(self, arch: str, dataset: str):
        """xautodl's network (``forward`` returns ``(features, logits)``), wrapped to return the logits only."""
        from xautodl.models import get_cell_based_tiny_net

        from greenmachine.spaces.wrappers import LogitsOnly

        self.validate(arch)
        net = get_cell_based_tiny_net(self.net_config(arch, dataset))
        return LogitsOnly(net, feature_module=net.lastact)

    def find_truth(self, data_dir: str | Path) -> Path:
        nats = Path(data_dir) / "nats"
        table = nats / f"{self.name}-hp{self.hp}.csv"
        if table.is_file():
            return table
        found = sorted(nats.glob(self.official_glob)) + sorted(nats.glob("*/" + self.official_glob))
        if found:
            return found[0]
        raise GreenmachineError(
            f"no {self.name.upper()} ground truth under {nats}: expected {table.name} or an official "
            f"{self.official_glob} directory (set --data-dir or GREENMACHINE_DATA); to make the table once, run "
            f"greenmachine truth export --space {self.name} --official DIR --out {table}"
        )

    def load_truth(self, source: str | Path, progress: Progress = lambda it: it):
        from greenmachine.spaces.truth import load_official, load_table

        source = Path(source)
        if source.is_dir():
            return load_official(source, self.name, progress=progress)
        return load_table(source, self.name)

    def finish_table(self, archs: list[str | None], source: str) -> list[str | None]:
        """Check (and complete, where the order is known) the index -> arch list read from a compact table."""
        return archs
