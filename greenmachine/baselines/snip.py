"""SNIP (Lee et al., ICLR 2019) as a zero-cost proxy (Abdelfattah et al. 2021, NASLib): the connection
sensitivity |dL/dm| of a weight mask m = 1, i.e. sum |W * dL/dW| over Conv/Linear layers, for the cross-entropy
of one minibatch with the network in train mode."""

import torch.nn.functional as F

from greenmachine.baselines import ProxyInputs, layers, logits, measure


@measure("snip")
def snip(inputs: ProxyInputs) -> float:
    net = inputs.fresh().train()
    F.cross_entropy(logits(net, inputs.images), inputs.labels).backward()
    return float(sum((m.weight.detach() * m.weight.grad).abs().sum() for m in layers(net) if m.weight.grad is not None))
