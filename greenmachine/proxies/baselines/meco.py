"""MeCo (Jiang et al., NeurIPS 2023), as in the authors' code: a forward hook on every module takes the first
image's output map (C x H x W), the Pearson correlation matrix of its C channels (NaN/inf set to 0), and its
minimum eigenvalue; the score is the sum over modules (NaN/inf results dropped). Eval mode is not set: the
network runs as built (train mode), like the other proxies here. Labels are not used."""

import torch

from greenmachine.proxies.baselines import ProxyInputs, hooked_forward, measure


@measure("meco")
def meco(inputs: ProxyInputs) -> float:
    net = inputs.fresh().train()
    results: list[float] = []

    def hook(_m, _inp, out):
        fea = out[0] if isinstance(out, (tuple, list)) else out[0]
        if not torch.is_tensor(fea) or fea.dim() < 1:
            return
        fea = fea.detach().reshape(fea.shape[0], -1).double()
        if fea.shape[0] < 2 or fea.shape[1] < 2:  # one value per channel: a NaN matrix, set to 0, adds 0
            return
        corr = torch.nan_to_num(torch.corrcoef(fea), nan=0.0, posinf=0.0, neginf=0.0)
        results.append(float(torch.linalg.eigvalsh(corr).min()))

    hooked_forward(net, inputs.images, list(net.modules()), hook)
    vals = torch.tensor(results, dtype=torch.float64)
    return float(vals[torch.isfinite(vals)].sum())
