"""Jacobian covariance (Mellor et al. 2020, v1 of NASWOT; NASLib's ``jacov``): J = d(sum logits)/dx per image,
C = corrcoef(J), score = -sum(log(v + k) + 1/(v + k)) over the eigenvalues v of C, k = 1e-5."""

import numpy as np
import torch

from greenmachine.proxies.baselines import ProxyInputs, logits, measure


@measure("jacov")
def jacov(inputs: ProxyInputs) -> float:
    net = inputs.fresh().train()
    x = inputs.images.clone().requires_grad_(True)
    y = logits(net, x)
    y.backward(torch.ones_like(y))
    jacob = x.grad.reshape(x.shape[0], -1).detach().cpu().numpy().astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant Jacobian row gives NaN: reported as NaN
        corrs = np.corrcoef(jacob)
    if not np.all(np.isfinite(corrs)):
        return float("nan")
    v = np.linalg.eigvalsh(corrs)
    k = 1e-5
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))
