"""SynFlow (Tanaka et al., NeurIPS 2020) as used for NAS by Abdelfattah et al. (ICLR 2021) and NASLib.

BatchNorm is removed (the zero-cost-proxies code scores ``get_prunable_copy(bn=False)``), parameters are replaced
by their absolute values, the network runs in float64 on an all-ones input of one image, and the score is
sum over Conv/Linear layers of sum |W * d(sum logits)/dW|. It depends on neither images nor labels.
"""

import torch

from greenmachine.proxies.baselines import ProxyInputs, layers, logits, measure
from greenmachine.probing.probe import synflow_network


@measure("synflow")
def synflow(inputs: ProxyInputs) -> float:
    net = synflow_network(inputs.network)
    ones = torch.ones((1, *inputs.images.shape[1:]), dtype=torch.float64, device=inputs.images.device)
    torch.sum(logits(net, ones)).backward()
    return float(sum((m.weight.detach() * m.weight.grad).abs().sum() for m in layers(net) if m.weight.grad is not None))
