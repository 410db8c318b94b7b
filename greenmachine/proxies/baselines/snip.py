"""SNIP (Lee et al., ICLR 2019) as a zero-cost proxy (Abdelfattah et al. 2021, NASLib): the connection
sensitivity |dL/dm| of a weight mask m = 1, i.e. sum |W * dL/dW| over Conv/Linear layers, for the cross-entropy
of one minibatch with the network in train mode."""

from greenmachine.proxies.baselines import ProxyInputs, layers, measure


@measure("snip")
def snip(inputs: ProxyInputs) -> float:
    net, _ = inputs.ce_pass()
    return float(sum((m.weight.detach() * m.weight.grad).abs().sum() for m in layers(net) if m.weight.grad is not None))
