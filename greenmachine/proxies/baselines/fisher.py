"""Fisher (Theis et al. 2018; Turner et al. 2020) as in NASLib / zero-cost-proxies: for the output a of every
Conv/Linear layer and its loss gradient g, per channel 0.5 * mean over the batch of (sum over space of a*g)^2,
summed over channels and layers (cross-entropy, train mode)."""

from greenmachine.proxies.baselines import ProxyInputs, measure


@measure("fisher")
def fisher(inputs: ProxyInputs) -> float:
    _, outputs = inputs.ce_pass()
    total = 0.0
    for a in outputs:
        if a.grad is None:
            continue
        prod = a.detach() * a.grad
        if prod.dim() == 4:
            prod = prod.sum(dim=(2, 3))
        total += float((0.5 * prod.pow(2).mean(0)).sum())
    return total
