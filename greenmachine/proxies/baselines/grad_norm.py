"""grad_norm (Abdelfattah et al. 2021, NASLib): sum over Conv/Linear layers of the L2 norm of dL/dW for the
cross-entropy of one minibatch (train mode)."""

from greenmachine.proxies.baselines import ProxyInputs, layers, measure


@measure("grad_norm")
def grad_norm(inputs: ProxyInputs) -> float:
    net, _ = inputs.ce_pass()
    return float(sum(m.weight.grad.norm() for m in layers(net) if m.weight.grad is not None))
