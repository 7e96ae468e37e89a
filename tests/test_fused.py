"""The fused pairwise weight branch (sanmini.ops.fused_pairwise, PairwiseAttention(fused=True))
against the plain layer, its specification: float64 outputs, every gradient and the batch-norm
running statistics after two training steps; torch.library's opcheck; torch.compile."""
import copy
import itertools

import numpy as np
import pytest
import torch

from sanmini.models import create
from sanmini.nn import PairwiseAttention, SANBlock
from sanmini.ops import fused_pairwise
from sanmini.ops.fused import _backward, _forward


def _pair(fused_kwargs=None, **kw):
    """A plain layer (backend "torch") and a fused copy with the same weights, float64, with
    gamma's batch norms moved off their initial values so that every term of the backward counts."""
    torch.manual_seed(0)
    plain = PairwiseAttention(6, 2, 8, share_planes=4, backend="torch", **kw).double()
    with torch.no_grad():
        for bn in (plain.conv_w[0], plain.conv_w[3]):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
    fused = copy.deepcopy(plain)
    fused.fused = True
    return plain, fused


GRID = list(itertools.product(["subtraction", "summation"], [True, False], ["reflect", "zeros"], [1, 2], [3, 7]))


@pytest.mark.parametrize("relation, position, pad_mode, stride, K", GRID,
                         ids=["-".join(map(str, g)) for g in GRID])
def test_fused_equals_the_plain_layer_in_float64(relation, position, pad_mode, stride, K):
    plain, fused = _pair(relation=relation, position_encoding=position, pad_mode=pad_mode,
                         stride=stride, kernel_size=K)
    gen = torch.Generator().manual_seed(1)
    opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (plain, fused)]
    for step in range(2):                               # two training steps, then evaluation
        x = torch.randn(2, 6, 9, 8, dtype=torch.float64, generator=gen)
        g = None
        outs, grads = [], []
        for model, opt in zip((plain, fused), opts):
            xi = x.clone().requires_grad_(True)
            y = model.train()(xi)
            g = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(step)) if g is None else g
            opt.zero_grad()
            (y * g).sum().backward()
            outs.append(y.detach())
            grads.append([xi.grad] + [p.grad for p in model.parameters()])
            opt.step()
        torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-10)
        for (name, _), a, b in zip([("x", None), *plain.named_parameters()], grads[0], grads[1]):
            torch.testing.assert_close(b, a, rtol=0, atol=1e-10, msg=f"gradient of {name} at step {step}")
    for (name, a), (_, b) in zip(plain.named_buffers(), fused.named_buffers()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12, msg=name)     # running statistics, batches counted
    assert fused.conv_w[0].num_batches_tracked == 2
    # evaluation: the running statistics, and the backward in one pass
    x = torch.randn(2, 6, 9, 8, dtype=torch.float64, generator=gen)
    xs = [x.clone().requires_grad_(True) for _ in range(2)]
    for opt in opts:
        opt.zero_grad()
    ys = [m.eval()(xi) for m, xi in zip((plain, fused), xs)]
    torch.testing.assert_close(ys[1], ys[0], rtol=0, atol=1e-10)
    for y in ys:
        (y * y).sum().backward()
    torch.testing.assert_close(xs[1].grad, xs[0].grad, rtol=0, atol=1e-10)
    for (name, a), (_, b) in zip(plain.named_parameters(), fused.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=1e-10, msg=f"gradient of {name} in evaluation")


def test_fused_in_float32_and_with_dilation_and_cumulative_momentum():
    plain, fused = _pair(kernel_size=3, dilation=2)
    for bn in (plain.conv_w[0], plain.conv_w[3], fused.conv_w[0], fused.conv_w[3]):
        bn.momentum = None                              # a cumulative average of the batches
    x = torch.randn(3, 6, 10, 9, dtype=torch.float64)
    for _ in range(2):
        torch.testing.assert_close(fused.train()(x), plain.train()(x), rtol=0, atol=1e-10)
    for (name, a), (_, b) in zip(plain.named_buffers(), fused.named_buffers()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12, msg=name)
    plain, fused = plain.float(), fused.float()
    torch.testing.assert_close(fused.train()(x.float()), plain.train()(x.float()), rtol=1e-4, atol=1e-4)


def test_the_operators_pass_opcheck():
    torch.manual_seed(0)
    layer = PairwiseAttention(6, 2, 8, share_planes=4, kernel_size=3).double()
    x = torch.randn(2, 6, 5, 6, dtype=torch.float64)
    from sanmini.nn.position import position_grid
    g0, g1 = layer.conv_w[0], layer.conv_w[3]
    x1, x2, x3 = (t.detach().requires_grad_(True) for t in (layer.conv1(x), layer.conv2(x), layer.conv3(x)))
    p = layer.conv_p(position_grid(5, 6, dtype=x.dtype)).detach().requires_grad_(True)
    for training in (True, False):
        args = (x1, x2, x3, p, g0.weight, g0.bias, g0.running_mean, g0.running_var,
                layer.conv_w[2].weight.detach().view(2, 4).requires_grad_(True), g1.weight, g1.bias,
                g1.running_mean, g1.running_var, layer.conv_w[5].weight.detach().view(2, 2).requires_grad_(True),
                layer.conv_w[5].bias, 1e-5, training, 1, 3, 1, 1, 1, True, "cpu")
        torch.library.opcheck(_forward, args)
        y, lse, *stats = _forward(*args)
        back = (torch.randn_like(y), y, *args[:4], *args[4:6], *stats[:2], args[8], *args[9:11], *stats[2:],
                *args[13:15], lse, 1e-5, training, 1, 3, 1, 1, 1, True, "cpu")
        # the backward has no backward of its own (no double backward): checked on plain tensors
        torch.library.opcheck(_backward, tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in back))


def test_torch_compile_traces_the_fused_layer_without_a_graph_break():
    torch._dynamo.reset()
    plain, fused = _pair(kernel_size=3)
    compiled = torch.compile(fused, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 6, 7, 7, dtype=torch.float64, requires_grad=True)
    y = compiled.train()(x)
    y.sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    want = plain.train()(x2)
    want.sum().backward()
    torch.testing.assert_close(y, want, rtol=0, atol=1e-10)
    torch.testing.assert_close(x.grad, x2.grad, rtol=0, atol=1e-10)
    explanation = torch._dynamo.explain(fused)(x.detach())
    assert explanation.graph_break_count == 0


def test_fused_san_model_trains_the_same_weights():
    torch.manual_seed(0)
    tiny = dict(width=16, share_planes=4, kernel_size=3, num_classes=5)
    plain = create("san10_pairwise", backend="torch", **tiny).double()
    fused = create("san10_pairwise", fused=True, **tiny).double()
    # Batch norms' shifts off zero: at zero, the centre tap's position offset p_i - p_i = 0 sits on
    # a ReLU's kink, on a side decided by rounding (bench/train_step.py, initial_state).
    with torch.no_grad():
        for module in plain.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, dtype=torch.float64))
    fused.load_state_dict(plain.state_dict())
    assert {m.sam.fused for m in fused.modules() if isinstance(m, SANBlock)} == {True}
    x = torch.randn(4, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 1, 2, 3])
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (plain, fused)]
    for _ in range(2):
        losses = []
        for model, opt in zip((plain, fused), opts):
            loss = torch.nn.functional.cross_entropy(model.train()(x), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[1], losses[0], rtol=0, atol=1e-10)
    for (name, a), (_, b) in zip(plain.state_dict().items(), fused.state_dict().items()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-9, msg=name)


@pytest.mark.parametrize("make, message", [
    (lambda: PairwiseAttention(6, 2, 8, share_planes=4, relation="concatenation", fused=True),
     r"fused=True computes the relations \('subtraction', 'summation'\), got relation='concatenation'"),
    (lambda: PairwiseAttention(6, 2, 8, share_planes=4, gamma_layers=3, fused=True),
     "fused=True computes gamma of two layers, got gamma_layers=3"),
    (lambda: PairwiseAttention(6, 2, 8, share_planes=4, recompute=True, fused=True),
     "recompute=True has nothing to do"),
    (lambda: create("san10_patchwise", fused=True), r"unknown overrides \['fused'\] for san10_patchwise"),
])
def test_what_the_fused_branch_does_not_compute_is_refused_by_name(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_fused_pairwise_checks_its_arguments():
    layer = PairwiseAttention(6, 2, 8, share_planes=4, kernel_size=3)
    x1, x3 = torch.randn(1, 2, 5, 5), torch.randn(1, 8, 5, 5)
    with pytest.raises(ValueError, match="gamma reads 4 channels, but the relation has 2 and the position encoding 0"):
        fused_pairwise(x1, x1, x3, None, layer.conv_w, kernel_size=3)
    with pytest.raises(ValueError, match="the fused branch computes the relations .* got 'dot'"):
        fused_pairwise(x1, x1, x3, None, layer.conv_w, kernel_size=3, relation="dot")
    with pytest.raises(ValueError, match="x1 and x2 must have one shape"):
        fused_pairwise(x1, x1[:, :1], x3, None, layer.conv_w, kernel_size=3)
    with pytest.raises(ValueError, match="gamma of two layers"):
        fused_pairwise(x1, x1, x3, None, layer.conv_w[:3], kernel_size=3)
    with pytest.raises(ValueError, match="backend must be 'auto', 'cpu' or 'cuda' for the fused branch, got 'torch'"):
        fused_pairwise(x1, x1, x3, None, layer.conv_w, kernel_size=3, backend="torch")


def test_the_cpu_backward_makes_two_passes_in_training_and_one_in_evaluation(monkeypatch):
    """Backward pass 2 is folded into pass 1 on the CPU (sanmini/ops/fused_cpu.py): the kernel is
    called for stages 1 and 3 in training, 0 in evaluation; the gradients are checked above."""
    from sanmini.ops import fused_cpu
    stages, kernel = [], fused_cpu.backward

    def spy(stage, *args):
        stages.append(stage)
        return kernel(stage, *args)

    monkeypatch.setattr(fused_cpu, "backward", spy)
    _, fused = _pair(kernel_size=3)
    x = torch.randn(2, 6, 9, 8, dtype=torch.float64)
    fused.train()(x.requires_grad_(True)).sum().backward()
    assert stages == [1, 3]
    stages.clear()
    fused.eval()(x).sum().backward()
    assert stages == [0]


def test_fused_float32_gradients_are_as_close_to_float64_as_the_plain_layers():
    """The fold adds up batch norm 0's sums from parts that cancel; in float32 its gradients must
    stay as close to the float64 ones as the plain layer's float32 gradients are."""
    plain, fused = _pair(kernel_size=7)
    x = torch.randn(4, 6, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    g = torch.randn(4, 8, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))

    def grads(model, dtype):
        model = copy.deepcopy(model).to(dtype).train()
        xi = x.detach().to(dtype).clone().requires_grad_(True)
        (model(xi) * g.to(dtype)).sum().backward()
        return [xi.grad.double()] + [p.grad.double() for p in model.parameters()]

    exact = grads(plain, torch.float64)
    names = ["x"] + [name for name, _ in plain.named_parameters()]
    for name, e, a, b in zip(names, exact, grads(plain, torch.float32), grads(fused, torch.float32)):
        scale = e.abs().max().item()
        if scale < 1e-8:         # a bias that a batch norm follows: no gradient but rounding
            continue
        err_plain, err_fused = ((t - e).abs().max().item() / scale for t in (a, b))
        assert err_fused <= max(4 * err_plain, 1e-5), (name, err_fused, err_plain)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_kernels_exp_is_numpys_within_a_unit_in_the_last_place(dtype):
    """fused_cpu._exp_row (exp by a polynomial and a power of two built from its bits) against
    numpy's exp in float64: over the range a softmax sees and the whole range of normal results,
    and at NaN, -inf, +inf and below the least kept x (0)."""
    from sanmini.ops import fused_cpu
    fl, coef, ints = fused_cpu.exp_constants(dtype)
    tile = fused_cpu.TILE
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-30, 0, 40 * tile), rng.uniform(float(fl[2]) + 2, 80, 40 * tile),
                        np.linspace(-1, 1, 4 * tile)]).astype(dtype)
    top = rng.uniform(-2, 2, tile).astype(dtype)
    got = x.copy()
    fused_cpu._exp_row(got, top, fl, coef, ints, np.empty(x.size, ints.dtype))
    shifted = (x.reshape(-1, tile) - top).ravel()
    with np.errstate(over="ignore"):
        want = np.exp(shifted.astype(np.float64))
    finite = np.isfinite(want.astype(dtype))
    spacing = np.spacing(want.astype(dtype)[finite]).astype(np.float64)
    assert np.all(np.abs(got[finite] - want[finite]) <= 1.5 * spacing)   # measured: at most 1 unit
    assert np.all(np.isinf(got[~finite]))                              # overflow gives inf
    specials = np.array([np.nan, -np.inf, np.inf, 2 * fl[2], 0] + [0] * (tile - 5), dtype)
    fused_cpu._exp_row(specials, np.zeros(tile, dtype), fl, coef, ints, np.empty(tile, ints.dtype))
    assert np.isnan(specials[0]) and specials[1] == 0 and specials[2] == np.inf and specials[3] == 0
    assert specials[4] == 1
