"""The classic zero-cost proxies written in the GP language.

They show that the language can express what hand-designed proxies compute (the tests check each equals its
direct implementation), and they can seed the initial population of an evolution.
"""

from __future__ import annotations

from greenmachine.proxies.primitives import in_language, parse_expression

CLASSIC_EXPRESSIONS: dict[str, str] = {
    # sum over layers of sum |W * dR/dW| on the BN-free, |W|, all-ones float64 network (Tanaka et al. 2020)
    "synflow": "w_sum_layers(w_sum(w_abs(w_mul(weight, synflow_grad))))",
    # sum |W * dL/dW| (Lee et al. 2019, as in NASLib / zero-cost-proxies)
    "snip": "w_sum_layers(w_sum(w_abs(w_mul(weight, grad))))",
    # sum over layers of ||dL/dW||_2 (Abdelfattah et al. 2021)
    "grad_norm": "w_sum_layers(w_norm(grad))",
    # log|det K|, K the Hamming kernel of the binary ReLU patterns summed over ReLUs (Mellor et al. 2021)
    "naswot": "k_logdet_sum(relu_kernel)",
    # MeCo's statistic (Jiang et al. 2023) restricted to the ReLU inputs: sum of the minimum eigenvalue of the
    # channel correlation matrix of the first image's map
    "meco_relu": "a_sum_layers(e_min(corr_eig))",
    # number of Conv/Linear weights (BN and biases excluded)
    "conv_params": "w_sum_layers(w_count(weight))",
    # Jacobian covariance (Mellor et al. 2020): the eigenvalue score of the correlation of the per-image input
    # Jacobians; in the language only with ``jacobian = true`` (it seeds only such runs)
    "jacov": "n_jacov(jacob_corr)",
    # TE-NAS's trainability (Chen et al. 2021): minus the condition number of the empirical NTK, as its log (the
    # same ranking); in the language only with ``ntk = true``
    "ntk_cond": "neg(n_cond(ntk))",
    # SWAP (Peng et al. 2024): distinct sample-wise activation patterns over all ReLUs, without the paper's
    # parameter-count regularisation; in the language only with ``swap = true``
    "swap": "swap",
}


def classic_tokens(name: str) -> list[str]:
    return parse_expression(CLASSIC_EXPRESSIONS[name])


def classic_names(structural: bool = False, jacobian: bool = False, ntk: bool = False,
                  swap: bool = False) -> list[str]:
    """The classic proxies that the language with these options expresses (by default the probe passes that
    every evolution runs: no jacov)."""
    return [name for name in CLASSIC_EXPRESSIONS
            if in_language(classic_tokens(name), structural, jacobian, ntk, swap)]
