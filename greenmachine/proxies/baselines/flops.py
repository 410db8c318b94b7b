"""FLOPs (in millions) of one forward pass of one image, counted by xautodl's ``get_model_infos``: the counter
that produced NATS-Bench's ``flops`` field."""

import copy

import torch

from greenmachine.proxies.baselines import ProxyInputs, measure


@measure("flops")
def flops(inputs: ProxyInputs) -> float:
    from xautodl.utils import get_model_infos

    state = torch.get_rng_state()  # get_model_infos draws a random input: keep the caller's RNG untouched
    try:
        mflops, _ = get_model_infos(copy.deepcopy(inputs.network).cpu(), (1, *inputs.images.shape[1:]))
    finally:
        torch.set_rng_state(state)
    return float(mflops)
