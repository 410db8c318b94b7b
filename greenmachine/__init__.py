"""greenmachine: evolve zero-cost proxies for NAS on NATS-Bench and meter what it costs."""

__version__ = "0.1.0"
