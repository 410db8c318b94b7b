"""TE-NAS's trainability (Chen et al. 2021, "Neural Architecture Search on ImageNet in Four GPU Hours"): the
condition number lambda_max / lambda_min of the empirical NTK Theta = J J^T, J the per-image gradients of the summed
logits with respect to the weights, in train mode. A smaller condition number trains better, so the score is
minus its log (the same ranking). On the first NTK_IMAGES (16) images of the minibatch (one backward each; TE-NAS uses a
minibatch of its own), every Conv2d/Linear weight: the protocol of the ntk probe pass, written out here directly."""

import numpy as np
import torch

from greenmachine.probing.probe import NTK_IMAGES
from greenmachine.proxies.baselines import ProxyInputs, layers, logits, measure


@measure("ntk_cond")
def ntk_cond(inputs: ProxyInputs) -> float:
    net = inputs.fresh().train()
    x = inputs.images[:NTK_IMAGES]
    weights = [m.weight for m in layers(net)]
    out = logits(net, x)
    rows = []
    for i in range(x.shape[0]):
        net.zero_grad(set_to_none=True)
        out[i].sum().backward(retain_graph=True)
        rows.append(np.concatenate([(w.grad if w.grad is not None else torch.zeros_like(w)).detach().cpu().numpy()
                                    .astype(np.float64).ravel() for w in weights]))
    jac = np.stack(rows)
    v = np.linalg.eigvalsh(jac @ jac.T)
    if not np.all(np.isfinite(v)) or v[-1] <= 0:
        return float("nan")
    return float(-(np.log(v[-1]) - np.log(max(v[0], v[-1] * 1e-12))))
