"""GRASP (Wang et al., ICLR 2020) as in NASLib / zero-cost-proxies: with g = dL/dW (no graph) and H the Hessian,
score = sum over Conv/Linear layers of sum(-W * Hg), where Hg is the gradient of z = sum(g_detached * dL/dW)
(temperature 1, one iteration, train mode)."""

import torch
import torch.nn.functional as F

from greenmachine.proxies.baselines import ProxyInputs, layers, logits, measure


@measure("grasp")
def grasp(inputs: ProxyInputs) -> float:
    net = inputs.fresh().train()
    weights = [m.weight for m in layers(net)]
    loss = F.cross_entropy(logits(net, inputs.images), inputs.labels)
    grad_w = torch.autograd.grad(loss, weights, allow_unused=True)
    loss = F.cross_entropy(logits(net, inputs.images), inputs.labels)
    grad_f = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
    z = sum((gw * gf).sum() for gw, gf in zip(grad_w, grad_f) if gw is not None and gf is not None)
    z.backward()
    return float(sum((-w.data * w.grad).sum() for w in weights if w.grad is not None))
