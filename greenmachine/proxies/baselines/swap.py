"""SWAP (Peng et al., ICLR 2024): the number of distinct sample-wise activation patterns, as in the authors' code: a
forward hook on every ReLU whose input is a feature map keeps its output; the outputs are flattened per image and
concatenated over the ReLUs (images x units), the sign taken, and the score is the number of distinct rows of the
transposed matrix: units whose on/off pattern over the images differs. The images are the first
``probe.SWAP_IMAGES`` of the minibatch (the whole minibatch goes through the network, train mode); the paper's
optional regularisation by the parameter count is not applied. Written out directly: the swap probe pass packs
the same patterns into integers, and a test checks that the two counts agree."""

import torch
import torch.nn as nn

from greenmachine.probing.probe import swap_size
from greenmachine.proxies.baselines import ProxyInputs, hooked_forward, measure


@measure("swap")
def swap(inputs: ProxyInputs) -> float:
    net = inputs.fresh().train()
    n = swap_size(inputs.images.shape[0])
    outputs: list[torch.Tensor] = []

    def hook(_m, inp, out):
        if inp[0].dim() == 4:
            outputs.append(out.detach()[:n].reshape(n, -1))

    hooked_forward(net, inputs.images, [m for m in net.modules() if isinstance(m, nn.ReLU)], hook)
    if not outputs:
        return 0.0
    patterns = torch.sign(torch.cat(outputs, dim=1)).T
    return float(torch.unique(patterns, dim=0).shape[0])
