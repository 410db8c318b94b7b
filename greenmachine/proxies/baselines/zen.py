"""Zen-score (Lin et al., ICCV 2021), as in the authors' code and NASLib: weights re-drawn from N(0, 1), a
Gaussian input x and x' = x + 0.01 * eps; score = log E|f(x) - f(x')| + sum over BatchNorm layers of
log sqrt(mean running_var), f = the feature map before global pooling (the space's ``feature_module``), train mode.
Needs no images or labels."""

import math

import torch
import torch.nn as nn

from greenmachine.proxies.baselines import ProxyInputs, measure


@measure("zen")
def zen(inputs: ProxyInputs) -> float:
    net = inputs.fresh().train()
    gen = torch.Generator(device=inputs.images.device).manual_seed(inputs.seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.normal_(generator=gen)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d) and m.affine:
                m.weight.fill_(1.0)
                m.bias.zero_()
        feats = []
        handle = net.feature_module.register_forward_hook(lambda _m, _i, out: feats.append(out))
        try:
            x = torch.randn(inputs.images.shape, generator=gen, device=inputs.images.device)
            x2 = x + 0.01 * torch.randn(inputs.images.shape, generator=gen, device=inputs.images.device)
            net(x)
            net(x2)
        finally:
            handle.remove()
        delta = torch.mean(torch.abs(feats[0] - feats[1]))
        score = math.log(float(delta)) if float(delta) > 0 else float("-inf")
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d) and m.running_var is not None:
                score += math.log(math.sqrt(float(torch.mean(m.running_var))))
    return score
