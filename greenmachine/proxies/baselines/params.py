"""#params: every trainable parameter (Conv, BatchNorm affine, Linear weight and bias), the count that the
NATS-Bench ``params`` field reports (in millions)."""

from greenmachine.proxies.baselines import ProxyInputs, measure


@measure("params")
def params(inputs: ProxyInputs) -> float:
    return float(sum(p.numel() for p in inputs.network.parameters()))
