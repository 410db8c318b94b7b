"""NASWOT (Mellor et al., ICML 2021), as in the authors' code: forward hooks on every ReLU add the kernel
K += c c^T + (1-c)(1-c)^T of the binary pattern c = (input > 0) of the minibatch; score = log|det K|.
Train mode, one minibatch; labels are not used. The products run in float32 torch matmuls, which are exact for
these integer counts (below 2^24 units per layer), and accumulate in float64."""

import numpy as np
import torch
import torch.nn as nn

from greenmachine.proxies.baselines import ProxyInputs, hooked_forward, measure


@measure("naswot")
def naswot(inputs: ProxyInputs) -> float:
    net = inputs.fresh().train()
    b = inputs.images.shape[0]
    k = torch.zeros((b, b), dtype=torch.float64)

    def hook(_m, inp, _out):
        c = (inp[0].reshape(b, -1) > 0).float()
        k.add_((c @ c.T + (1.0 - c) @ (1.0 - c).T).double().cpu())

    hooked_forward(net, inputs.images, [m for m in net.modules() if isinstance(m, nn.ReLU)], hook)
    return float(np.linalg.slogdet(k.numpy())[1])
