"""The fused pairwise weight branch: pairwise attention from phi(x), psi(x), p and beta(x) to y in
one operator, without materialising any ``(N, *, K*K, L)`` tensor (Zhao et al., CVPR 2020,
Eq. 2, 3).

    y = fused_pairwise(x1, x2, x3, p, gamma, relation=..., kernel_size=..., training=...)

computes what :class:`sanmini.nn.PairwiseAttention` computes from its ``conv1(x)``, ``conv2(x)``,
``conv3(x)`` and ``conv_p(grid)``: the relation (subtraction or summation) and the offsets
p_i - p_j, gamma (batch norm, ReLU, 1x1, batch norm, ReLU, 1x1: a ``conv_w`` of two layers), the
softmax over the footprint and the aggregation. The plain layer is the specification; the tests
check this operator against it in float64, output and every gradient.

The forward keeps phi(x), psi(x), beta(x), p and, per (pixel, weight channel), the log-sum-exp of
the softmax, (N, Cw, L); its output y is saved too (the layer that reads y usually keeps it anyway:
a saved output costs no second copy). The backward recomputes the rest, pixel by pixel, in passes
(the batch norms' backward needs two sums over the whole batch each): two on the CPU, where the
second batch norm's sums are folded into the first pass (:mod:`.fused_cpu` has the passes and the
algebra), three on CUDA.
In training the forward operator also returns the batch statistics (mean and biased variance of
gamma's input and of its hidden layer), and :func:`fused_pairwise` updates gamma's running
statistics with them as ``nn.BatchNorm2d`` does; in evaluation the running statistics are used.

Both passes are ``torch.library`` custom operators with fake implementations and a registered
autograd formula, so ``torch.compile`` traces through them without a graph break. Backends:
``"cpu"`` (:mod:`.fused_cpu`, Numba) and ``"cuda"`` (:mod:`.fused_cuda`, Numba CUDA), the same
passes; the relations other than subtraction and summation and other depths of gamma are refused
with a ``ValueError`` that says so.
"""
# No `from __future__ import annotations` in this module: torch 2.4's custom_op reads the
# operators' type hints as objects and refuses them as strings (ValueError: infer_schema).
import numpy as np
import torch
from torch import Tensor, nn

from .functional import CUDA_TARGET, resolve_backend
from .geometry import check_tensor, make_window
from .kernel_backend import compute_dtype

FUSED_RELATIONS = {"subtraction": 1, "summation": -1}    # delta = phi_i - sign * psi_j


def _affine(weight: Tensor, bias: Tensor, mean: Tensor, var: Tensor, eps: float):
    """Batch norm as z * s + t per channel, and istd = 1 / sqrt(var + eps) for the backward."""
    istd = torch.rsqrt(var + eps)
    s = weight * istd
    return s, bias - mean * s, istd


def _moments(total: Tensor, width: int, count: int, dtype) -> tuple[Tensor, Tensor]:
    """Sums (2, *) of z and z^2 over the batch (float64) -> mean and biased variance (width,)."""
    mean = total[0, :width] / count
    var = (total[1, :width] / count - mean * mean).clamp_min(0.0)
    return mean.to(dtype), var.to(dtype)


def _planes(*tensors: Tensor) -> list[Tensor]:
    """(N, C, H, W) -> (N, C, H*W + 1): the planes flattened, one zero appended (what zero
    padding reads: :func:`.fused_cpu.plan`)."""
    return [torch.nn.functional.pad(t.flatten(2), (0, 1)).contiguous() for t in tensors]


def _np(*tensors: Tensor) -> list[np.ndarray]:
    return [t.detach().contiguous().numpy() for t in tensors]


def _scalar(value, dtype) -> np.generic:
    return np.float64(value) if dtype == torch.float64 else np.float32(value)


class _Cpu:
    """The passes on the CPU kernels (:mod:`.fused_cpu`): per-image sums, added up here."""

    def __init__(self, x1, win, sign, reflect, cmax, dtype):
        from . import fused_cpu              # compiled, or loaded from the cache, on first use
        self.k, self.sign, self.zero, self.cmax = fused_cpu, sign, _scalar(0, dtype), cmax
        self.exp = fused_cpu.exp_constants(np.float64 if dtype == torch.float64 else np.float32)
        self.src = fused_cpu.plan(*x1.shape[2:], win.out_height, win.out_width, win.kernel_size,
                                  win.stride, win.padding, win.dilation, reflect)

    def forward(self, stage, inputs, consts, y, lse) -> Tensor:
        sums = np.zeros((y.shape[0], 2, self.cmax))
        self.k.forward(stage, *_np(*inputs), self.src, self.sign, *_np(*consts), sums, y.numpy(),
                       lse.numpy(), *self.exp, self.zero)
        return torch.from_numpy(sums.sum(axis=0))

    STAGES = (1, 3)         # backward pass 2 is folded into pass 1 (:mod:`.fused_cpu`)

    def backward(self, training, count, gy, y, inputs, consts, lse, grads):
        gx1, gx2, gx3, gp = (g.numpy() for g in grads[:4])
        gp_part = np.zeros((gy.shape[0], *gp.shape[1:]), dtype=gp.dtype)
        n, (rh, c0), cw = gy.shape[0], consts[4].shape, consts[9].shape[0]
        gw1, gw2, gb2 = np.zeros((n, rh, c0)), np.zeros((n, cw, rh)), np.zeros((n, cw))
        parts, sums = np.zeros((n, 4, self.cmax)), np.zeros((4, self.cmax))
        fold, cross = np.zeros((n, 4, c0)), np.zeros((n, 2, c0, rh))
        arrays = (*_np(gy, *inputs), self.src, self.sign, *_np(*consts, lse))
        for stage in self.STAGES if training else (0,):
            self.k.backward(stage, training, count, *arrays, sums, gx1, gx2, gx3, gp_part, gw1, gw2,
                            gb2, parts, fold, cross, *self.exp, self.zero)
            if stage == 3:            # it writes no sums
                continue
            sums[:] = parts.sum(axis=0)
            if stage == 1:            # batch norm 0's sums, from pass 1's parts
                self.k.fold(sums, fold.sum(axis=0), cross.sum(axis=0), *_np(consts[4], consts[5]), count)
        gp[:] = gp_part.sum(axis=0)
        return (torch.from_numpy(sums), *(torch.from_numpy(a.sum(axis=0)) for a in (gw1, gw2, gb2)))


class _Cuda:
    """The passes on the CUDA kernels (:mod:`.fused_cuda`): per-block sums, added up here."""

    def __init__(self, x1, win, sign, reflect, cmax, dtype):
        from . import cuda as launcher, fused_cuda
        import numba
        self.f, self.run, self.cmax, self.dtype = fused_cuda, launcher.run, cmax, dtype
        self.kernels = fused_cuda.kernels(numba.float64 if dtype == torch.float64 else numba.float32)
        self.geometry = (*x1.shape[2:], win.out_width, win.kernel_size, win.stride, win.padding,
                         win.dilation, reflect, _scalar(sign, dtype))
        self.zero, self.itemsize = _scalar(0, dtype), torch.finfo(dtype).bits // 8

    def _launch(self, kernel, backward, shapes, n, length, tensors, rows, stage, extra=()):
        """Run ``kernel`` over every tile, with per-block float64 sums acc (blocks, rows, cmax)
        and ``extra`` per-block arrays (blocks, *shape); returns them summed over the blocks."""
        tile = self.f.tile_size(backward, *shapes, self.itemsize)
        blocks = min(self.f.MAX_BLOCKS, n * -(-length // tile))
        device = tensors[0].device
        acc = torch.zeros(blocks, rows, self.cmax, dtype=torch.float64, device=device)
        extra = [torch.zeros(blocks, *shape, dtype=torch.float64, device=device) for shape in extra]
        shared = self.f.layout(backward, *shapes, tile)["total"] * self.itemsize
        tensors = [*tensors[:-2], acc, *extra, *tensors[-2:]] if not backward else [*tensors, acc, *extra]
        # p and its gradient have no channels without a position encoding; the kernels never read
        # them then, and a GPU array of no elements is handed over as one zero plane instead
        tensors = [t if t.numel() else t.new_zeros([max(d, 1) for d in t.shape]) for t in tensors]
        self.run(kernel, blocks, self.f.THREADS, tensors, (*stage, *self.geometry, tile, self.zero), shared)
        return [t.sum(0) for t in (acc, *extra)]

    @staticmethod
    def _shapes(inputs, consts):
        return (consts[0].shape[0], consts[2].shape[0], consts[5].shape[0], inputs[2].shape[1])

    def forward(self, stage, inputs, consts, y, lse) -> Tensor:
        (total,) = self._launch(self.kernels.forward, False, self._shapes(inputs, consts), y.shape[0],
                                y.shape[2], [*inputs, *consts, y, lse], 2, (stage,))
        return total

    STAGES = (1, 2, 3)

    def backward(self, training, count, gy, y, inputs, consts, lse, grads):
        s0, t0, mean0, istd0, w1, s1, t1, mean1, istd1, w2, b2 = consts
        shapes = (s0.shape[0], w1.shape[0], w2.shape[0], inputs[2].shape[1])
        sums = torch.zeros(4, self.cmax, dtype=torch.float64, device=gy.device)
        weights = [torch.zeros_like(t, dtype=torch.float64) for t in (w1, w2, b2)]
        for stage in self.STAGES if training else (0,):
            tensors = [gy, y, *inputs, s0, t0, mean0, istd0, w1, s1, t1, mean1, istd1, w2, b2, lse,
                       (sums / count).to(self.dtype), *grads]
            totals = self._launch(self.kernels.backward, True, shapes, gy.shape[0], gy.shape[2],
                                  tensors, 4, (stage, training), (w1.shape, w2.shape, b2.shape))
            # each pass writes its own rows and weight gradients; the others stay zero
            sums = sums + totals[0]
            weights = [w + t for w, t in zip(weights, totals[1:])]
        return (sums, *weights)


def _passes(backend: str):
    return _Cpu if backend == "cpu" else _Cuda


@torch.library.custom_op("sanmini::fused_pairwise_forward", mutates_args=(), device_types=("cpu", "cuda"))
def _forward(x1: Tensor, x2: Tensor, x3: Tensor, p: Tensor, bn0_weight: Tensor, bn0_bias: Tensor,
             bn0_mean: Tensor, bn0_var: Tensor, w1: Tensor, bn1_weight: Tensor, bn1_bias: Tensor,
             bn1_mean: Tensor, bn1_var: Tensor, w2: Tensor, b2: Tensor, eps: float, training: bool,
             sign: int, kernel_size: int, stride: int, padding: int, dilation: int,
             reflect: bool, backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """-> y (N, V, Ho, Wo), lse (N, Cw, L), and the statistics used: mean0, var0 (C0,), mean1,
    var1 (Rh,) (the batch's in training, the running ones in evaluation)."""
    out_dtype, dtype = x1.dtype, compute_dtype(x1.dtype)
    (x1, x2, x3, p, g0, h0, mean0, var0, w1, g1, h1, mean1, var1, w2, b2) = (
        t.to(dtype) for t in (x1, x2, x3, p, bn0_weight, bn0_bias, bn0_mean, bn0_var, w1, bn1_weight,
                              bn1_bias, bn1_mean, bn1_var, w2, b2))
    win = make_window(x1, kernel_size, stride, padding, dilation, "reflect" if reflect else "zeros")
    n, cw, rh, c0 = x1.shape[0], w2.shape[0], w1.shape[0], w1.shape[1]
    count = n * win.taps * win.out_height * win.out_width
    y = x3.new_empty(n, x3.shape[1], win.out_height * win.out_width)
    lse = x3.new_empty(n, cw, win.out_height * win.out_width)
    inputs = _planes(x1, x2, x3, p)
    passes = _passes(backend)(x1, win, sign, reflect, max(c0, rh), dtype)

    def run(stage, s0, t0, s1, t1):
        return passes.forward(stage, inputs, (s0, t0, w1, s1, t1, w2, b2), y, lse)

    if training:
        ones, zeros = torch.ones_like(h1), torch.zeros_like(h1)
        mean0, var0 = _moments(run(1, g0, h0, ones, zeros), c0, count, dtype)   # z0's sums
    s0, t0, _ = _affine(g0, h0, mean0, var0, eps)
    if training:
        mean1, var1 = _moments(run(2, s0, t0, ones, zeros), rh, count, dtype)   # z1's sums
    s1, t1, _ = _affine(g1, h1, mean1, var1, eps)
    run(3, s0, t0, s1, t1)
    stats_dtype = bn0_mean.dtype
    y = y.view(n, x3.shape[1], win.out_height, win.out_width)
    return (y.to(out_dtype), lse, *(t.to(stats_dtype).clone() for t in (mean0, var0, mean1, var1)))


@_forward.register_fake
def _(x1, x2, x3, p, bn0_weight, bn0_bias, bn0_mean, bn0_var, w1, bn1_weight, bn1_bias, bn1_mean,
      bn1_var, w2, b2, eps, training, sign, kernel_size, stride, padding, dilation, reflect, backend):
    span = dilation * (kernel_size - 1) + 1
    ho = (x1.shape[2] + 2 * padding - span) // stride + 1
    wo = (x1.shape[3] + 2 * padding - span) // stride + 1
    y = x3.new_empty(x3.shape[0], x3.shape[1], ho, wo)
    lse = x3.new_empty(x3.shape[0], w2.shape[0], ho * wo, dtype=compute_dtype(x3.dtype))
    return (y, lse, bn0_mean.new_empty(bn0_mean.shape), bn0_var.new_empty(bn0_var.shape),
            bn1_mean.new_empty(bn1_mean.shape), bn1_var.new_empty(bn1_var.shape))


@torch.library.custom_op("sanmini::fused_pairwise_backward", mutates_args=(), device_types=("cpu", "cuda"))
def _backward(grad_y: Tensor, y: Tensor, x1: Tensor, x2: Tensor, x3: Tensor, p: Tensor,
              bn0_weight: Tensor, bn0_bias: Tensor, mean0: Tensor, var0: Tensor, w1: Tensor,
              bn1_weight: Tensor, bn1_bias: Tensor, mean1: Tensor, var1: Tensor, w2: Tensor, b2: Tensor,
              lse: Tensor, eps: float, training: bool, sign: int, kernel_size: int, stride: int,
              padding: int, dilation: int, reflect: bool, backend: str
              ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """-> the gradients of x1, x2, x3, p, bn0_weight, bn0_bias, w1, bn1_weight, bn1_bias, w2, b2.
    y is the forward's output (the CUDA kernels read the softmax's inner products off it)."""
    out_dtype, dtype = x1.dtype, compute_dtype(x1.dtype)
    (grad_y, y, x1, x2, x3, p, g0, h0, mean0, var0, w1, g1, h1, mean1, var1, w2, b2, lse) = (
        t.to(dtype) for t in (grad_y, y, x1, x2, x3, p, bn0_weight, bn0_bias, mean0, var0, w1,
                              bn1_weight, bn1_bias, mean1, var1, w2, b2, lse))
    win = make_window(x1, kernel_size, stride, padding, dilation, "reflect" if reflect else "zeros")
    n, rh, c0 = x1.shape[0], w1.shape[0], w1.shape[1]
    count = n * win.taps * win.out_height * win.out_width
    s0, t0, istd0 = _affine(g0, h0, mean0, var0, eps)
    s1, t1, istd1 = _affine(g1, h1, mean1, var1, eps)
    inputs = _planes(x1, x2, x3, p)
    grads = [torch.zeros_like(a) for a in inputs]          # of x1, x2, x3, p, as planes
    passes = _passes(backend)(x1, win, sign, reflect, max(c0, rh), dtype)
    sums, gw1, gw2, gb2 = passes.backward(
        training, count, grad_y.flatten(2).contiguous(),
        y.flatten(2).contiguous(), inputs, (s0, t0, mean0, istd0, w1, s1, t1, mean1, istd1, w2, b2),
        lse, grads)
    hw = x1.shape[2] * x1.shape[3]     # the appended element of each plane is dropped
    out = [g[..., :hw].reshape(t.shape) for g, t in zip(grads, (x1, x2, x3, p))]
    # batch norm's own parameters: weight <- sum of gradient * normalised input, bias <- sum of gradient
    out += [*(sums[row, :c].clone() for row, c in ((3, c0), (2, c0))), gw1,
            *(sums[row, :c].clone() for row, c in ((1, rh), (0, rh))), gw2, gb2]
    return tuple(g.to(out_dtype).contiguous() for g in out)


@_backward.register_fake
def _(grad_y, y, x1, x2, x3, p, bn0_weight, bn0_bias, mean0, var0, w1, bn1_weight, bn1_bias, mean1,
      var1, w2, b2, lse, eps, training, sign, kernel_size, stride, padding, dilation, reflect, backend):
    return tuple(t.new_empty(t.shape) for t in (x1, x2, x3, p, bn0_weight, bn0_bias, w1, bn1_weight,
                                                   bn1_bias, w2, b2))


_SCALARS = ("eps", "training", "sign", "kernel_size", "stride", "padding", "dilation", "reflect",
            "backend")


def _setup_context(ctx, inputs, output):
    (x1, x2, x3, p, g0, h0, m0, v0, w1, g1, h1, m1, v1, w2, b2, *scalars) = inputs
    y, lse, mean0, var0, mean1, var1 = output
    ctx.save_for_backward(y, x1, x2, x3, p, g0, h0, mean0, var0, w1, g1, h1, mean1, var1, w2, b2, lse)
    ctx.scalars = scalars


def _autograd(ctx, grad_y, *unused):
    gx1, gx2, gx3, gp, gg0, gh0, gw1, gg1, gh1, gw2, gb2 = _backward(grad_y, *ctx.saved_tensors,
                                                                     *ctx.scalars)
    return (gx1, gx2, gx3, gp, gg0, gh0, None, None, gw1, gg1, gh1, None, None, gw2, gb2,
            *([None] * len(_SCALARS)))


torch.library.register_autograd("sanmini::fused_pairwise_forward", _autograd, setup_context=_setup_context)


def _check_gamma(gamma) -> None:
    kinds = [type(m).__name__ for m in gamma]
    expected = (nn.BatchNorm2d, nn.ReLU, nn.Conv2d) * 2            # nn.Conv2d: Pointwise too
    if len(gamma) != 6 or not all(isinstance(m, t) for m, t in zip(gamma, expected)) or \
            any(m.kernel_size != (1, 1) for m in (gamma[2], gamma[5])):
        raise ValueError(f"the fused branch computes gamma of two layers (BatchNorm2d, ReLU, Conv2d, "
                         f"BatchNorm2d, ReLU, Conv2d: gamma_layers=2), got {kinds}")
    for bn in (gamma[0], gamma[3]):
        if not (bn.affine and bn.track_running_stats):
            raise ValueError("the fused branch needs gamma's batch norms affine and tracking running "
                             "statistics (nn.BatchNorm2d's defaults)")


def fused_pairwise(x1: Tensor, x2: Tensor, x3: Tensor, p: Tensor | None, gamma, *,
                   relation: str = "subtraction", kernel_size: int = 7, stride: int = 1,
                   padding: int | None = None, dilation: int = 1, pad_mode: str = "reflect",
                   training: bool = False, backend: str = "auto") -> Tensor:
    """Pairwise attention's weight branch and aggregation in one operator.

    Args:
        x1, x2: phi(x) and psi(x), (N, R, H, W). x3: beta(x), (N, V, H, W).
        p: the encoded position grid ``conv_p(position_grid(H, W))``, (1, 2, H, W), or None.
        gamma: the layer's ``conv_w`` (:func:`sanmini.nn.gamma.gamma` with two layers); in
            training its batch norms' running statistics are updated as ``nn.BatchNorm2d`` does.
        relation: ``"subtraction"`` (phi_i - psi_j) or ``"summation"`` (phi_i + psi_j).
        training: batch statistics (True) or the running ones (False), as gamma's batch norms.
        backend: ``"cpu"`` (:mod:`.fused_cpu`, Numba), ``"cuda"`` (:mod:`.fused_cuda`, Numba CUDA:
            CUDA tensors, or CPU tensors under Numba's CUDA simulator) or ``"auto"`` (by the
            tensors' device), as :func:`sanmini.ops.resolve_backend` decides.

    Returns y (N, V, Ho, Wo), equal to the plain layer's output.
    """
    if relation not in FUSED_RELATIONS:
        raise ValueError(f"the fused branch computes the relations {tuple(FUSED_RELATIONS)}, got "
                         f"{relation!r}; use fused=False for the others")
    if backend not in ("auto", "cpu", "cuda"):
        raise ValueError(f"backend must be 'auto', 'cpu' or 'cuda' for the fused branch, got {backend!r}")
    for name, t in (("x1", x1), ("x2", x2), ("x3", x3)):
        check_tensor(name, t, 4)
        if t.device != x1.device:
            raise ValueError(f"x1, x2 and x3 must be on one device, got {name} on {t.device} and x1 on {x1.device}")
    backend = resolve_backend(backend, x1)
    if backend == "torch":         # "auto" where Numba's kernels cannot run
        reason = CUDA_TARGET[2] if x1.device.type == "cuda" else "numba is not installed"
        raise ValueError(f"the fused branch has no kernels for tensors on {x1.device} here: {reason}")
    if x2.shape != x1.shape or x3.shape[0] != x1.shape[0] or x3.shape[2:] != x1.shape[2:]:
        raise ValueError(f"x1 and x2 must have one shape and x3 the same N, H, W, got {tuple(x1.shape)}, "
                         f"{tuple(x2.shape)} and {tuple(x3.shape)}")
    _check_gamma(gamma)
    bn0, conv1, bn1, conv2 = gamma[0], gamma[2], gamma[3], gamma[5]
    if bn0.eps != bn1.eps:
        raise ValueError(f"the fused branch takes one eps for gamma's batch norms, got {bn0.eps} and {bn1.eps}")
    rh, c0, cw = conv1.out_channels, conv1.in_channels, conv2.out_channels
    positions = 0 if p is None else p.shape[1]
    if c0 != x1.shape[1] + positions:
        raise ValueError(f"gamma reads {c0} channels, but the relation has {x1.shape[1]} and the "
                         f"position encoding {positions}")
    if x3.shape[1] % cw:
        raise ValueError(f"gamma's {cw} weight channels must divide the {x3.shape[1]} value channels of x3")
    if padding is None:
        padding = dilation * (kernel_size - 1) // 2
    if p is None:
        p = x1.new_zeros(1, 0, *x1.shape[2:])
    y, _, mean0, var0, mean1, var1 = _forward(
        x1, x2, x3, p, bn0.weight, bn0.bias, bn0.running_mean, bn0.running_var,
        conv1.weight.view(rh, c0), bn1.weight, bn1.bias, bn1.running_mean, bn1.running_var,
        conv2.weight.view(cw, rh), conv2.bias, float(bn0.eps), bool(training), FUSED_RELATIONS[relation],
        kernel_size, stride, padding, dilation, pad_mode == "reflect", backend)
    if training:
        count = x1.shape[0] * kernel_size ** 2 * y.shape[2] * y.shape[3]
        with torch.no_grad():
            for bn, mean, var in ((bn0, mean0, var0), (bn1, mean1, var1)):
                _update_running(bn, mean, var, count)
    return y


def _update_running(bn, mean: Tensor, var: Tensor, count: int) -> None:
    """What ``nn.BatchNorm2d`` does to its buffers in a training step: the running mean and the
    running unbiased variance move by ``momentum`` (or average cumulatively if it is None)."""
    bn.num_batches_tracked.add_(1)
    factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    bn.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
    bn.running_var.mul_(1 - factor).add_(var.detach() * (count / max(count - 1, 1)), alpha=factor)
