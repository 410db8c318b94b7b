"""Probe an untrained network once and keep what the GP terminals need.

One call of :func:`probe_network` builds the network (seeded), runs

* the **ce** pass: a train-mode forward/backward of the cross-entropy loss on the probe minibatch, capturing for
  every Conv2d/Linear layer its weight and weight gradient, and for every ReLU its pre-activation input and the
  gradient of the loss with respect to it; and
* the **spectrum** pass: a forward pass of the same minibatch that keeps, per ReLU, the eigenvalues of the
  C x C Pearson correlation matrix between the channels of the first image's pre-activation map (the quantity
  MeCo takes the minimum of), or with ``spectrum_images`` K > 1 the mean of the first K images' ascending
  spectra; and
* the **synflow** pass: the network with BatchNorm removed (as in Tanaka et al. and the zero-cost-proxies code),
  weights replaced by their absolute values, in float64, fed an all-ones input; the gradient of the summed
  logits with respect to every Conv2d/Linear weight; and
* the **jacobian** pass (opt-in, not in :data:`DEFAULT_GROUPS`): a train-mode forward of the minibatch and the
  gradient of the summed logits with respect to the input images, kept as the B x B Pearson correlation matrix
  of the per-image input Jacobians (Mellor et al.'s Jacobian covariance, NASLib's ``jacov``): one kernel per
  network, where the other kernels are one per ReLU; and
* the **ntk** pass (opt-in): the empirical neural tangent kernel of TE-NAS (Chen et al. 2021) on the first
  :data:`NTK_IMAGES` images of the minibatch: a train-mode forward of those images and, per image, the gradient of
  its summed logits with respect to every Conv2d/Linear weight; the kernel is the N x N Gram matrix of those
  gradients (the inner products of the per-sample gradients across samples); and
* the **swap** pass (opt-in): SWAP, the sample-wise activation patterns of Peng et al. (ICLR 2024): a train-mode
  forward of the minibatch under ``no_grad``; every unit of every ReLU input (a channel at a position) has one
  binary pattern over the first :data:`SWAP_IMAGES` images (active or not on each), and the terminal ``swap`` is
  the number of distinct patterns over all of the network's ReLUs: one number per network (taken in the ce
  pass's forward when that pass runs too).

Why activations are summarised: a full activation map of a NAS-Bench-201 network at batch 64 is about 200 MB,
so a 100-network sample would not fit in memory nor evaluate quickly. The probe keeps, per ReLU, the
channel means of the activation and of its gradient (B x C) and two B x B kernels over the full maps: NASWOT's
binary-pattern (Hamming) kernel and the cosine-similarity kernel. Weights and gradients are kept whole.
Per-network footprint (TSS, batch 64): about 3 MB of kernels plus 16 bytes per parameter, i.e. 5-40 MB,
10.6 MB on average; the default 200-network evolution sample takes 2.07 GB in memory.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from greenmachine.config import check_seed
from greenmachine.errors import GreenmachineError
from greenmachine.probing.datasets import images_digest
from greenmachine.spaces import get_space

WEIGHT_TERMINALS = ("weight", "grad", "synflow_grad")
ACT_TERMINALS = ("act", "act_grad")
KERNEL_TERMINALS = ("relu_kernel", "act_cosine")
SPECTRUM_TERMINALS = ("corr_eig",)
NET_KERNEL_TERMINALS = ("jacob_corr", "ntk")
NET_SCALAR_TERMINALS = ("swap",)
GROUPS: dict[str, tuple[str, ...]] = {
    "ce": ("weight", "grad", "act", "act_grad", "relu_kernel", "act_cosine"),
    "synflow": ("synflow_grad",),
    "spectrum": ("corr_eig",),
    "jacobian": ("jacob_corr",),
    "ntk": ("ntk",),
    "swap": ("swap",),
}
# images of the minibatch whose per-sample gradients the ntk pass takes: one backward per image, so the kernel of
# a 64-image minibatch cost about 25 times the ce pass (one TSS network); 16 cost 5.6 times (median, 6 networks)
NTK_IMAGES = 16
# images whose activation patterns the swap pass compares: a pattern is SWAP_IMAGES bits, so the count is at most
# 2^16 = 65,536 distinct patterns, which the larger TSS networks reach, and that cap is part of the signal: on 300
# random TSS architectures SWAP over 16 images ranks at Kendall tau 0.67 (CIFAR-10) / 0.66 (ImageNet16-120), over
# 32 images 0.64 / 0.63, over all 62 0.61 / 0.60 (README, "SWAP")
SWAP_IMAGES = 16
# the passes an evolution probes unless its config opts in to more (``jacobian = true``, ``ntk = true``): the
# jacobian pass costs another forward and backward per network, the ntk pass NTK_IMAGES backwards, the swap pass a
# forward, and the language of earlier runs did not read them
DEFAULT_GROUPS: tuple[str, ...] = ("ce", "synflow", "spectrum")
# the others, each named as the config option that asks for it
OPT_IN_GROUPS: tuple[str, ...] = tuple(g for g in GROUPS if g not in DEFAULT_GROUPS)
PROBE_VERSION = 2  # bump when what a probe captures changes: it is part of the cache key


def groups_for(terminals: Iterable[str]) -> tuple[str, ...]:
    """The probe passes needed to produce ``terminals``."""
    needed = set(terminals)
    return tuple(g for g, names in GROUPS.items() if needed & set(names))


@dataclass(frozen=True)
class ProbeSettings:
    """Everything besides the architecture that changes what a probe returns (and so the cache key)."""

    space: str
    dataset: str
    batch_size: int = 64
    batch_seed: int = 0
    init_seed: int = 0
    device: str = "cpu"
    # SHA-256 of the normalised minibatch and labels this protocol draws (probing.datasets.images_digest); part of
    # the cache key so that probes made on other images (another data folder, other files) are never reused.
    # "" = not computed here; the probe cache then computes it from its own data folder, or does not cache.
    images_digest: str = ""
    # images of the minibatch whose channel-correlation spectra the spectrum pass averages (corr_eig): MeCo reads
    # the first image only, and which image comes first is noise (README, "Averaging over images")
    spectrum_images: int = 1

    def key(self) -> dict:
        d = asdict(self)
        d["device"] = torch.device(self.device).type
        d["version"] = PROBE_VERSION
        if self.spectrum_images == 1:  # the protocol of every earlier probe: their cache entries stay valid
            del d["spectrum_images"]
        return d


# how many initialisations a score may average over (``--inits``): each one probes every network again
MAX_INITS = 32


def _check_integer(value: Any, what: str) -> None:
    """A count read from a file may be anything JSON holds: a word or a boolean is refused in one line."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise GreenmachineError(f"{what} must be an integer, got {value!r}")


def check_inits(inits: int, what: str = "--inits") -> int:
    """An initialisation count within 1..MAX_INITS, or a one-line error stating the range."""
    _check_integer(inits, what)
    if not 1 <= inits <= MAX_INITS:
        raise GreenmachineError(f"{what} must be between 1 and {MAX_INITS}, got {inits}")
    return inits


def check_spectrum_images(images: int, batch_size: int, what: str = "--spectrum-images") -> int:
    """A spectrum image count within 1..``batch_size``, or a one-line error.

    Why average at all: which image of the minibatch comes first is noise in MeCo-style statistics, and the other
    images' spectra come from the same forward pass. What it gains on the README's held-out samples with 16
    images: +0.002 Kendall tau on TSS CIFAR-10 and ImageNet16-120, +0.011 on CIFAR-100 (README, "Averaging over
    images")."""
    _check_integer(images, what)
    if not 1 <= images <= batch_size:
        raise GreenmachineError(f"{what} must be between 1 and the probe batch size {batch_size}, got {images}")
    return images


def init_protocols(settings: ProbeSettings, inits: int, data_dir: str | None = None) -> list[ProbeSettings]:
    """The protocols of a score averaged over ``inits`` initialisations: the r-th moves both the minibatch seed and
    the initialisation seed by r, so that ``--inits 3`` at probe seed S is exactly the mean of the three
    single-initialisation runs at probe seeds S, S+1 and S+2 (and the first of them is the run without ``--inits``).

    Why: a zero-cost proxy reads one random initialisation and one minibatch; on TSS CIFAR-10 two initialisations of
    the same 500 networks rank the evolved proxies' scores at Kendall tau 0.88-0.91 with each other, and that noise
    is what the average removes. Each protocol keeps the images digest of its own minibatch when the first carries
    one (computed from ``data_dir``), so the probe cache keys every initialisation on the images it probed."""
    check_inits(inits)
    out = [settings]
    for r in range(1, inits):
        check_seed(settings.batch_seed + r, "the probe seed of the last initialisation")
        check_seed(settings.init_seed + r, "the initialisation seed of the last initialisation")
        digest = ""
        if settings.images_digest:
            if data_dir is None:
                raise ValueError("init_protocols: settings with an images digest need the data_dir it came from")
            digest = images_digest(str(data_dir), settings.dataset, settings.batch_size, settings.batch_seed + r)
        out.append(replace(settings, batch_seed=settings.batch_seed + r, init_seed=settings.init_seed + r,
                           images_digest=digest))
    return out


def weighted_layers(net: nn.Module) -> list[nn.Module]:
    """The layers whose weights the proxies score: every Conv2d and Linear, in module order."""
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def init_network(space: str, arch: str, dataset: str, init_seed: int, index: int) -> nn.Module:
    """Build the network with a seed that depends on the run seed and the architecture only; whatever the space,
    its ``forward`` returns the logits only (the one contract of probing and baselines)."""
    torch.manual_seed(init_seed * 1_000_003 + index)
    return get_space(space).build_network(arch, dataset)


def _strip_batchnorm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.Identity())
        else:
            _strip_batchnorm(child)


def hamming_kernel(pre: torch.Tensor) -> torch.Tensor:
    """NASWOT's kernel of one layer: K[i,j] = number of units where samples i and j share the ReLU state,
    i.e. c c^T + (1-c)(1-c)^T, computed with one matmul as 2 c c^T - s_i - s_j + D (s = active units per sample).
    The matmul runs in float32, which is exact for these integer counts below 2^24 units per sample."""
    c = (pre.flatten(1) > 0).float()
    both = (c @ c.T).double()
    s = c.sum(dim=1).double()
    return 2.0 * both - s[:, None] - s[None, :] + c.shape[1]


def cosine_kernel(pre: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of the samples' pre-activation maps (float32 matmul, float64 result)."""
    a = pre.flatten(1).float()
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (a @ a.T).double()


def _channel_mean(t: torch.Tensor) -> torch.Tensor:
    return (t.mean(dim=(2, 3)) if t.dim() == 4 else t).double().cpu()


class _SharedInputs:
    """Summaries of ReLU inputs, computed once per input tensor.

    Why: in a NAS-Bench-201 / NATS cell every ReLU-Conv-BN edge leaving a node starts with a ReLU of that node's
    tensor, so up to three ReLUs of a cell see the very same tensor object; its channel means, kernels and
    correlation spectrum are the same numbers and are computed once (the gradient stays per ReLU). The dict
    keeps each tensor alive, so an ``id`` is never reused within a pass. With ``swap_images`` n > 0 it also codes
    each feature map's activation patterns over its first n images (the swap terminal, :meth:`swap_count`)."""

    def __init__(self, spectrum: bool, kernels: bool, spectrum_images: int = 1, swap_images: int = 0):
        self.spectrum, self.kernels, self.spectrum_images = spectrum, kernels, spectrum_images
        self.swap_images = swap_images
        self.seen: dict[int, tuple[torch.Tensor, dict[str, torch.Tensor]]] = {}
        self.spectrum_seconds = 0.0
        self.swap_seconds = 0.0

    def of(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        hit = self.seen.get(id(x))
        if hit is not None and hit[0] is x:
            return hit[1]
        d = x.detach()
        out: dict[str, torch.Tensor] = {}
        if self.kernels:
            out["act"] = _channel_mean(d)
            out["relu_kernel"] = hamming_kernel(d).cpu()
            out["act_cosine"] = cosine_kernel(d).cpu()
        if self.spectrum:
            t0 = time.perf_counter()
            out["corr_eig"] = _relu_input_spectrum(d, self.spectrum_images)
            self.spectrum_seconds += time.perf_counter() - t0
        if self.swap_images and d.dim() == 4:  # feature maps only, as the SWAP authors' code
            t0 = time.perf_counter()
            out["swap_codes"] = activation_patterns(d, self.swap_images)
            self.swap_seconds += time.perf_counter() - t0
        self.seen[id(x)] = (x, out)
        return out

    def swap_count(self) -> torch.Tensor:
        """The swap terminal: distinct activation patterns over every distinct feature map seen, as a 1-element
        float64 tensor (a map that several ReLUs read is coded once; only distinct patterns count anyway)."""
        t0 = time.perf_counter()
        codes = [out["swap_codes"] for _, out in self.seen.values() if "swap_codes" in out]
        count = torch.unique(torch.cat(codes)).numel() if codes else 0
        self.swap_seconds += time.perf_counter() - t0
        return torch.tensor([float(count)], dtype=torch.float64)


def _relu_input_spectrum(x: torch.Tensor, images: int = 1) -> torch.Tensor:
    """The ascending correlation spectrum of the first image's map, or the mean of the first ``images`` ones'
    (elementwise over the sorted eigenvalues: the k-th smallest averaged with the k-th smallest)."""
    if x.dim() == 4:
        if images == 1:
            return channel_correlation_eigenvalues(x[0]).cpu()
        return batched_correlation_eigenvalues(x[:images]).mean(dim=0).cpu()
    return torch.zeros(1, dtype=torch.float64)  # a vector per image: one channel per unit, no spatial extent


def probe_ce(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, spectrum: bool = False,
             timing: dict[str, float] | None = None, spectrum_images: int = 1,
             swap: bool = False) -> dict[str, list[torch.Tensor]]:
    """The cross-entropy pass (see the module docstring); with ``spectrum`` it is also the spectrum pass, and with
    ``swap`` the swap pass: the correlation eigenvalues and the activation patterns are taken in the same forward
    (train mode, the same batch statistics, so the same pre-activations as a separate forward), which saves a
    whole forward per network. ``timing`` receives the seconds spent on the spectra (``"spectrum"``) and on the
    patterns (``"swap"``), so that each pass keeps its own cost."""
    net.train()
    net.zero_grad(set_to_none=True)
    relus = [m for m in net.modules() if isinstance(m, nn.ReLU)]
    summaries: list[dict[str, torch.Tensor]] = []
    grad_means: list[torch.Tensor | None] = []
    shapes: list[torch.Size] = []
    shared = _SharedInputs(spectrum=spectrum, kernels=True, spectrum_images=spectrum_images,
                           swap_images=swap_size(images.shape[0]) if swap else 0)

    def pre_hook(_module, inputs):
        x = inputs[0]
        summaries.append(shared.of(x))
        # a distinct autograd node per ReLU (a free view, not a copy), so that the gradient reaching it is this
        # ReLU's, not the sum over the branches that share the tensor; only its channel means are kept, taken
        # as the gradient passes, so no activation-sized gradient outlives the backward
        y = x.view_as(x)
        pos = len(grad_means)
        grad_means.append(None)
        shapes.append(x.shape)

        def keep(g: torch.Tensor, pos: int = pos) -> None:
            grad_means[pos] = _channel_mean(g)

        if y.requires_grad:  # a ReLU on the raw input (no parameter before it) gets no gradient: zeros
            y.register_hook(keep)
        return (y,)

    handles = []
    for m in relus:
        m.inplace = False  # lastact's ReLU is in-place; the captured pre-activation must survive
        handles.append(m.register_forward_pre_hook(pre_hook))
    try:
        logits = net(images)
        F.cross_entropy(logits, labels).backward()
    finally:
        for h in handles:
            h.remove()
    layers = weighted_layers(net)
    out: dict[str, list[torch.Tensor]] = {
        "weight": [m.weight.detach().flatten().float().cpu() for m in layers],
        "grad": [
            (m.weight.grad if m.weight.grad is not None else torch.zeros_like(m.weight)).flatten().float().cpu()
            for m in layers
        ],
        "act": [s["act"] for s in summaries],
        "act_grad": [],
        "relu_kernel": [s["relu_kernel"] for s in summaries],
        "act_cosine": [s["act_cosine"] for s in summaries],
    }
    for g, shape in zip(grad_means, shapes):  # a ReLU the loss does not reach has a zero gradient
        out["act_grad"].append(g if g is not None else torch.zeros(shape[:2], dtype=torch.float64))
    if spectrum:
        out["corr_eig"] = [s["corr_eig"] for s in summaries]
    if swap:
        out["swap"] = [shared.swap_count()]
    if timing is not None:
        timing["spectrum"] = shared.spectrum_seconds
        timing["swap"] = shared.swap_seconds
    net.zero_grad(set_to_none=True)
    return out


def channel_correlation_eigenvalues(fmap: torch.Tensor) -> torch.Tensor:
    """Ascending eigenvalues of the channel correlation matrix of one C x H x W map (NaN entries set to 0, as
    in MeCo's code)."""
    corr = torch.corrcoef(fmap.reshape(fmap.shape[0], -1).double())
    corr = torch.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0)
    return torch.linalg.eigvalsh(corr)


def batched_correlation_eigenvalues(fmaps: torch.Tensor) -> torch.Tensor:
    """:func:`channel_correlation_eigenvalues` of every map of a K x C x H x W stack, in one batched call (the
    Pearson correlation as ``torch.corrcoef`` computes it: clipped to [-1, 1], NaN for a constant channel, set to
    0)."""
    f = fmaps.reshape(fmaps.shape[0], fmaps.shape[1], -1).double()
    f = f - f.mean(dim=2, keepdim=True)
    cov = f @ f.transpose(1, 2)
    std = torch.diagonal(cov, dim1=1, dim2=2).sqrt()
    corr = (cov / std[:, :, None] / std[:, None, :]).clamp(-1.0, 1.0)
    corr = torch.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0)
    return torch.linalg.eigvalsh(corr)


def relu_input_forward(net: nn.Module, images: torch.Tensor, pre_hook: Callable) -> None:
    """One forward of ``images`` under ``no_grad`` with ``pre_hook`` reading the input of every ReLU (the forward of
    the passes that only look at activations: spectrum, swap)."""
    handles = [m.register_forward_pre_hook(pre_hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            net(images)
    finally:
        for h in handles:
            h.remove()


def probe_spectrum(net: nn.Module, images: torch.Tensor, spectrum_images: int = 1) -> dict[str, list[torch.Tensor]]:
    """The spectrum pass (train mode, like the ce pass, so that BatchNorm sees the same batch statistics)."""
    net.train()
    eigs: list[torch.Tensor] = []
    shared = _SharedInputs(spectrum=True, kernels=False, spectrum_images=spectrum_images)

    def pre_hook(_module, inputs):
        eigs.append(shared.of(inputs[0])["corr_eig"])

    relu_input_forward(net, images, pre_hook)
    return {"corr_eig": eigs}


def synflow_network(net: nn.Module) -> nn.Module:
    """A float64 copy of ``net`` without BatchNorm and with |weights|: the network synflow scores."""
    netc = copy.deepcopy(net)
    _strip_batchnorm(netc)
    netc = netc.double()
    with torch.no_grad():
        for p in netc.state_dict().values():
            p.abs_()
    return netc


@contextlib.contextmanager
def synflow_in_place(net: nn.Module):
    """``net`` turned, for the ``with`` block, into the network :func:`synflow_network` returns (BatchNorm removed,
    float64, |weights|), then restored exactly: the BatchNorm modules are put back, and every parameter and buffer
    gets its saved float32 value again (float32 -> float64 -> float32 is exact, and the values are restored from
    the saved copy anyway).

    Why not :func:`synflow_network`: ``copy.deepcopy`` of a NAS-Bench-201 module tree costs about as much as the
    synflow forward and backward together (27 ms of 70 ms per network, measured); a copy of the tensors costs
    little. The probe uses this; the synflow baseline keeps the copy, so the two are checked against each other."""
    saved = {k: v.detach().clone() for k, v in net.state_dict().items()}
    removed: list[tuple[nn.Module, str, nn.Module]] = []

    def strip(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                removed.append((module, name, child))
                setattr(module, name, nn.Identity())
            else:
                strip(child)

    try:
        strip(net)
        net.double()
        with torch.no_grad():
            for p in net.state_dict().values():
                p.abs_()
        yield net
    finally:
        net.zero_grad(set_to_none=True)
        for module, name, child in removed:
            setattr(module, name, child)
        net.float()
        net.load_state_dict(saved)


def probe_synflow(net: nn.Module, resolution: int) -> dict[str, list[torch.Tensor]]:
    """The synflow pass: d(sum of logits)/dW of the linearised network on an all-ones input (``net`` is left as
    it was, see :func:`synflow_in_place`)."""
    with synflow_in_place(net) as netc:
        device = next(netc.parameters()).device
        ones = torch.ones(1, 3, resolution, resolution, dtype=torch.float64, device=device)
        torch.sum(netc(ones)).backward()
        return {
            "synflow_grad": [
                (m.weight.grad if m.weight.grad is not None else torch.zeros_like(m.weight)).flatten().cpu()
                for m in weighted_layers(netc)
            ]
        }


def probe_jacobian(net: nn.Module, images: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """The jacobian pass: J_i = d(sum of logits)/dx_i per image (train mode, as the jacov baseline), kept as the
    B x B correlation matrix of the rows J_i. NaN entries (a constant Jacobian row) are set to 0, as MeCo's code does
    for channel correlations, so that a tree still gets numbers where the jacov baseline reports no score. Only
    the input gradient is computed (``autograd.grad``): no weight gradient is accumulated."""
    net.train()
    x = images.clone().requires_grad_(True)
    y = net(x)
    (jacobian,) = torch.autograd.grad(y, x, torch.ones_like(y))
    corr = torch.corrcoef(jacobian.reshape(jacobian.shape[0], -1).double())
    return {"jacob_corr": [torch.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0).cpu()]}


def ntk_size(batch_size: int) -> int:
    """The side of the ntk pass's kernel for a minibatch of ``batch_size`` images."""
    return min(batch_size, NTK_IMAGES)


# the passes that hold one N x N kernel per network, and N for a minibatch of B images: what the probe cache checks
# an entry of such a pass against (cache.valid_pass), so that a new kernel pass is one line here
KERNEL_SIDE: dict[str, Callable[[int], int]] = {"jacobian": lambda batch_size: batch_size, "ntk": ntk_size}


def probe_ntk(net: nn.Module, images: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """The ntk pass: Theta_ij = <df_i/dW, df_j/dW>, f_i the summed logits of image i, W every Conv2d/Linear weight,
    on the first :func:`ntk_size` images (train mode, their own BatchNorm statistics, as TE-NAS computes it). One
    backward per image through the shared forward graph; float64 Gram matrix. A weight that takes no gradient (a
    layer the output does not depend on) contributes zeros, as TE-NAS skips it."""
    net.train()
    x = images[: ntk_size(images.shape[0])]
    weights = [m.weight for m in weighted_layers(net)]
    out = net(x)
    rows = []
    for i in range(x.shape[0]):
        grads = torch.autograd.grad(out[i].sum(), weights, retain_graph=i + 1 < x.shape[0], allow_unused=True)
        rows.append(torch.cat([(g if g is not None else torch.zeros_like(w)).reshape(-1).double()
                               for g, w in zip(grads, weights)]))
    gradients = torch.stack(rows)
    kernel = gradients @ gradients.T
    return {"ntk": [torch.nan_to_num(kernel, nan=0.0, posinf=0.0, neginf=0.0).cpu()]}


def swap_size(batch_size: int) -> int:
    """The images of a ``batch_size`` minibatch whose activation patterns the swap pass compares."""
    return min(batch_size, SWAP_IMAGES)


def activation_patterns(x: torch.Tensor, images: int) -> torch.Tensor:
    """One int64 per unit of a ReLU input ``x`` (B x ...): bit i set when the unit is active (> 0) on image i, for
    the first ``images`` images (at most 62, so that the code stays a non-negative int64)."""
    bits = (x[:images].reshape(images, -1) > 0).long()
    weights = torch.ones(images, 1, dtype=torch.long, device=x.device) << torch.arange(images, device=x.device)[:, None]
    return (bits * weights).sum(dim=0)


def probe_swap(net: nn.Module, images: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """The swap pass: the number of distinct sample-wise activation patterns over every ReLU of the network whose
    input is a feature map (SWAP, Peng et al. 2024, without their parameter-count regularisation, which a tree can
    build from other terminals).

    The whole minibatch goes through the network (train mode, so its BatchNorm statistics are those of the ce
    pass) and the patterns are read on the first :func:`swap_size` images. A tensor that several ReLUs read (a
    NATS cell node feeding three edges) has the same patterns each time; it is read once, which changes nothing
    since only distinct patterns count. When the ce pass runs too, it takes the patterns in its own forward
    (:func:`probe_ce` with ``swap``) and this pass does not run."""
    net.train()
    shared = _SharedInputs(spectrum=False, kernels=False, swap_images=swap_size(images.shape[0]))

    def pre_hook(_module, inputs):  # returns None: the ReLU's input stays as it is
        shared.of(inputs[0])

    relu_input_forward(net, images, pre_hook)
    return {"swap": [shared.swap_count()]}


@dataclass
class NetworkProbe:
    """What one probe of one architecture holds: per terminal, one tensor per layer."""

    index: int
    arch: str
    tensors: dict[str, list[torch.Tensor]]
    seconds: float
    # seconds of each pass run (the network build counted in the first); fused passes split by where time went
    pass_seconds: dict[str, float] = field(default_factory=dict)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for ts in self.tensors.values() for t in ts)


def probe_network(
    index: int,
    arch: str,
    settings: ProbeSettings,
    images: torch.Tensor,
    labels: torch.Tensor,
    groups: Iterable[str] = DEFAULT_GROUPS,
) -> NetworkProbe:
    """Run the requested probe passes on one freshly initialised network.

    When both the ce and the spectrum pass are asked for, they share one forward (``probe_ce(spectrum=True)``):
    the spectrum pass alone costs a forward, fused it costs only its eigenvalues; the swap pass fuses with the ce
    pass the same way (``probe_ce(swap=True)``). ``pass_seconds`` still gives each pass its own seconds (the cache
    stores them per pass)."""
    from greenmachine.probing.datasets import DATASETS

    device = torch.device(settings.device)
    groups = tuple(groups)
    fused = "ce" in groups and "spectrum" in groups
    fused_swap = "ce" in groups and "swap" in groups
    tensors: dict[str, list[torch.Tensor]] = {}
    seconds: dict[str, float] = {}

    def clock() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    start = t0 = clock()
    net = init_network(settings.space, arch, settings.dataset, settings.init_seed, index).to(device)
    if "synflow" in groups:  # before the ce pass, from the untouched initial weights
        tensors.update(probe_synflow(net, DATASETS[settings.dataset].resolution))
        seconds["synflow"], t0 = clock() - t0, clock()
    if "jacobian" in groups:  # train mode: it moves only BatchNorm's running statistics, which no pass reads
        tensors.update(probe_jacobian(net, images.to(device)))
        seconds["jacobian"], t0 = clock() - t0, clock()
    if "ntk" in groups:
        tensors.update(probe_ntk(net, images.to(device)))
        seconds["ntk"], t0 = clock() - t0, clock()
    if "swap" in groups and not fused_swap:  # forward only, as the spectrum pass
        tensors.update(probe_swap(net, images.to(device)))
        seconds["swap"], t0 = clock() - t0, clock()
    if "spectrum" in groups and not fused:  # forward only: BatchNorm running statistics do not change train-mode outputs
        tensors.update(probe_spectrum(net, images.to(device), settings.spectrum_images))
        seconds["spectrum"], t0 = clock() - t0, clock()
    if "ce" in groups:
        timing: dict[str, float] = {}
        tensors.update(probe_ce(net, images.to(device), labels.to(device), spectrum=fused, timing=timing,
                                spectrum_images=settings.spectrum_images, swap=fused_swap))
        elapsed, t0 = clock() - t0, clock()
        for group, taken in (("spectrum", fused), ("swap", fused_swap)):
            if taken:
                seconds[group] = timing[group]
                elapsed -= timing[group]
        seconds["ce"] = elapsed
    return NetworkProbe(index, arch, tensors, clock() - start, {g: seconds[g] for g in groups if g in seconds})


def time_forward_backward(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Seconds of one plain train-mode forward+backward: the yardstick for the probe's overhead."""
    net.train()
    start = time.perf_counter()
    F.cross_entropy(net(images), labels).backward()
    if images.is_cuda:
        torch.cuda.synchronize()
    net.zero_grad(set_to_none=True)
    return time.perf_counter() - start

