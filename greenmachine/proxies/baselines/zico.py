"""ZiCo (Li et al., ICLR 2023), as in the authors' code: the minibatch is split into two halves; for every
Conv/Linear layer, with the mean of |g| and the (population) std of g of each weight's gradient over the halves,
score = sum over layers of log( sum over weights with std > 0 of mean|g| / std(g) )."""

import math

import torch
import torch.nn.functional as F

from greenmachine.proxies.baselines import ProxyInputs, layers, logits, measure


@measure("zico")
def zico(inputs: ProxyInputs) -> float:
    net = inputs.fresh().train()
    grads: list[list[torch.Tensor]] = []
    half = inputs.images.shape[0] // 2
    for part in (slice(0, half), slice(half, 2 * half)):
        net.zero_grad(set_to_none=True)
        F.cross_entropy(logits(net, inputs.images[part]), inputs.labels[part]).backward()
        grads.append([
            (m.weight.grad if m.weight.grad is not None else torch.zeros_like(m.weight)).detach().flatten()
            for m in layers(net)
        ])
    score = 0.0
    for per_layer in zip(*grads):
        g = torch.stack(per_layer)
        std = g.std(dim=0, unbiased=False)
        mean_abs = g.abs().mean(dim=0)
        keep = std > 0
        s = float((mean_abs[keep] / std[keep]).sum())
        if s > 0:
            score += math.log(s)
    return score
