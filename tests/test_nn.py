"""sanmini.nn: every relation function of pairwise and patchwise attention, the SAN block.

Each relation is checked three ways: the output against the paper's formula written out here with
explicit loops over footprint positions, gradcheck in float64, and the same output on the "torch"
and "cpu" backends (and "cuda", on one tiny case)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sanmini
from conftest import cuda_test_device
from sanmini.nn import (PAIRWISE_RELATIONS, PATCHWISE_RELATIONS, PairwiseAttention,
                        PatchwiseAttention, Pointwise, SANBlock, gamma, position_grid, set_backend)
from sanmini.nn.maps import one_pass, stackable

N, C, H, W, K = 2, 8, 5, 6, 3


def _x(seed=0, dtype=torch.float64):
    return torch.randn(N, C, H, W, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _module(cls, relation, **kw):
    torch.manual_seed(0)
    m = cls(C, 2, 8, share_planes=4, kernel_size=K, relation=relation, **kw).double()
    return m.eval()   # batch norm with its running statistics, so the formula below is exact


def _neighbours(t):
    """(N, C, H, W) -> [(N, C, H, W)] * K*K: t at each footprint offset, reflection padded."""
    p = K // 2
    padded = F.pad(t, (p, p, p, p), mode="reflect")
    return [padded[:, :, a:a + H, b:b + W] for a in range(K) for b in range(K)]


def _gamma(m, rel):
    return m.conv_w(rel)


def _pairwise_formula(m, x):
    """Eq. (2)-(3) with loops over j: y_i = sum_j softmax_j(gamma(delta(x_i, x_j), p_i - p_j)) * beta(x_j)."""
    x1, x2, x3 = m.conv1(x), m.conv2(x), m.conv3(x)
    pos = m.conv_p(position_grid(H, W, dtype=x.dtype)) if m.position_encoding else None
    logits = []
    for xj, pj in zip(_neighbours(x2), _neighbours(pos) if pos is not None else [None] * K * K):
        delta = {"summation": x1 + xj, "subtraction": x1 - xj,
                 "concatenation": torch.cat([x1, xj], 1), "hadamard": x1 * xj,
                 "dot": (x1 * xj).sum(1, keepdim=True)}[m.relation]
        if pos is not None:
            delta = torch.cat([delta, (pos - pj).expand(N, -1, -1, -1)], 1)
        logits.append(m.conv_w(delta))                       # (N, Cw, H, W)
    alpha = torch.stack(logits, 2).softmax(2)                # (N, Cw, K*K, H, W)
    cw = alpha.shape[1]
    y = torch.zeros_like(x3)
    for j, vj in enumerate(_neighbours(x3)):
        y += alpha[:, torch.arange(x3.shape[1]) % cw, j] * vj
    return y


def _patchwise_formula(m, x):
    """Eq. (4)-(5) with loops: alpha(x_R(i)) = gamma(delta(x_R(i))), y_i = sum_j alpha_j * beta(x_j)."""
    x1, x2, x3 = m.conv1(x), m.conv2(x), m.conv3(x)
    n1, n2 = _neighbours(x1), _neighbours(x2)
    if m.relation == "star":
        delta = torch.stack([(x1 * xj).sum(1) for xj in n2], 1)
    elif m.relation == "clique":
        delta = torch.stack([(a * b).sum(1) for a in n1 for b in n2], 1)
    else:
        delta = torch.cat([x1] + [xj[:, r:r + 1] for r in range(x1.shape[1]) for xj in n2], 1)
    alpha = m.conv_w(delta)                                  # (N, Cw*K*K, H, W)
    cw = alpha.shape[1] // (K * K)
    alpha = alpha.view(N, cw, K * K, H, W)
    y = torch.zeros_like(x3)
    for j, vj in enumerate(_neighbours(x3)):
        y += alpha[:, torch.arange(x3.shape[1]) % cw, j] * vj
    return y


CASES = [(PairwiseAttention, r, _pairwise_formula) for r in PAIRWISE_RELATIONS] + \
        [(PatchwiseAttention, r, _patchwise_formula) for r in PATCHWISE_RELATIONS]
IDS = [f"{c.__name__}-{r}" for c, r, _ in CASES]


@pytest.mark.parametrize("cls, relation, formula", CASES, ids=IDS)
def test_relation_against_formula_and_backends(cls, relation, formula):
    m = _module(cls, relation)
    x = _x()
    want = formula(m, x)
    for backend in ["torch", "cpu"]:
        got = set_backend(m, backend)(x)
        assert got.shape == (N, 8, H, W)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("cls, relation, formula", CASES, ids=IDS)
def test_relation_gradcheck(cls, relation, formula):
    m = set_backend(_module(cls, relation), "cpu")
    x = _x(1).requires_grad_()
    assert torch.autograd.gradcheck(m, (x,))


def test_pairwise_without_position_and_with_stride():
    m = _module(PairwiseAttention, "subtraction", position_encoding=False)
    assert not hasattr(m, "conv_p")
    torch.testing.assert_close(m(_x()), _pairwise_formula(m, _x()))
    strided = _module(PairwiseAttention, "subtraction", stride=2)
    assert strided(_x()).shape == (N, 8, 3, 3)


def test_pairwise_weights_sum_to_one_patchwise_do_not():
    """Pairwise weights are softmax-normalised over the footprint; patchwise weights are not."""
    captured = {}
    for cls, rel in [(PairwiseAttention, "subtraction"), (PatchwiseAttention, "concatenation")]:
        m = _module(cls, rel)
        m.aggregation.register_forward_hook(lambda mod, i, o, name=cls.__name__: captured.update({name: i[1]}))
        m(_x())
    torch.testing.assert_close(captured["PairwiseAttention"].sum(2), torch.ones(N, 2, H * W, dtype=torch.float64))
    assert not torch.allclose(captured["PatchwiseAttention"].sum(2), torch.ones(N, 2, H * W, dtype=torch.float64))


def test_cuda_backend_on_a_tiny_case():
    device = cuda_test_device()
    m = _module(PairwiseAttention, "subtraction").to(device)
    x = torch.randn(1, C, 4, 4, dtype=torch.float64, device=device)
    want = set_backend(m, "torch")(x)
    torch.testing.assert_close(set_backend(m, "cuda")(x), want)


def test_san_block_is_residual():
    block = SANBlock(32, "pairwise", kernel_size=3, share_planes=4).double().eval()
    x = torch.randn(2, 32, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        block.conv.weight.zero_()
        block.conv.bias.zero_()
    torch.testing.assert_close(block(x), x)     # zero residual branch: the identity
    assert block.sam.conv1.out_channels == 2 and block.sam.conv3.out_channels == 8


@pytest.mark.parametrize("make, message", [
    (lambda: PairwiseAttention(8, 2, 8, relation="division"), r"relation must be one of \('summation'"),
    (lambda: PatchwiseAttention(8, 2, 8, relation="subtraction"), r"relation must be one of \('star', 'clique', 'concatenation'\) for patchwise"),
    (lambda: PairwiseAttention(8, 2, 8, kernel_size=4), r"kernel_size must be an odd positive int"),
    (lambda: PatchwiseAttention(8, 2, 8, kernel_size=0), r"kernel_size must be an odd positive int"),
    (lambda: PairwiseAttention(8, 2, 12, share_planes=8), r"share_planes=8 must divide the value width out_planes=12"),
    (lambda: SANBlock(32, "axial"), r"attention must be one of \('pairwise', 'patchwise'\)"),
    (lambda: SANBlock(8), r"planes=8 is too narrow"),
    (lambda: set_backend(SANBlock(32, share_planes=4), "cupy"), r"backend must be one of"),
])
def test_bad_configuration(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# --- recompute: the weight branch recomputed in the backward pass -----------------------------

def _twins(make):
    """The same layer twice, from the same weights: recompute off, recompute on."""
    torch.manual_seed(0)
    plain, again = make(False).double(), make(True).double()
    again.load_state_dict(plain.state_dict())
    return plain, again


RECOMPUTED = [
    ("pairwise", lambda on: PairwiseAttention(C, 2, 8, share_planes=4, kernel_size=K, recompute=on)),
    ("pairwise-dot", lambda on: PairwiseAttention(C, 2, 8, share_planes=4, kernel_size=K, relation="dot",
                                                  position_encoding=False, recompute=on)),
    ("patchwise", lambda on: PatchwiseAttention(C, 2, 8, share_planes=4, kernel_size=K, recompute=on)),
    ("patchwise-star", lambda on: PatchwiseAttention(C, 2, 8, share_planes=4, kernel_size=K, relation="star",
                                                     recompute=on)),
    ("block", lambda on: SANBlock(32, "pairwise", kernel_size=K, share_planes=4, recompute=on)),
]


@pytest.mark.parametrize("backend", ["torch", "cpu"])
@pytest.mark.parametrize("make", [m for _, m in RECOMPUTED], ids=[n for n, _ in RECOMPUTED])
def test_recompute_gives_the_same_outputs_gradients_and_running_statistics(make, backend):
    """Two training-mode steps: the same outputs, input and parameter gradients, and batch-norm
    running statistics updated once per step (a plain checkpoint would update them twice)."""
    plain, again = (set_backend(m, backend) for m in _twins(make))
    channels = 32 if isinstance(plain, SANBlock) else C
    for step in range(2):
        x = torch.randn(N, channels, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(step))
        grads = []
        for m in (plain, again):
            xi = x.clone().requires_grad_()
            y = m.train()(xi)
            y.sin().sum().backward()                  # a non-uniform upstream gradient
            grads.append((y, xi.grad))
        torch.testing.assert_close(grads[1][0], grads[0][0])
        torch.testing.assert_close(grads[1][1], grads[0][1])
    for (key, a), b in zip(plain.named_parameters(), again.parameters()):
        torch.testing.assert_close(b.grad, a.grad, msg=key)     # accumulated over the two steps
    for (key, a), b in zip(plain.named_buffers(), again.buffers()):
        torch.testing.assert_close(b, a, msg=key, rtol=0, atol=0)
    assert {int(b) for k, b in again.named_buffers() if k.endswith("num_batches_tracked")} == {2}


@pytest.mark.parametrize("backend", ["torch", "cpu"])
@pytest.mark.parametrize("attention", ["pairwise", "patchwise"])
def test_recompute_under_bfloat16_autocast(attention, backend):
    """Under torch.autocast(bfloat16) the recomputation runs in the autocast state of the first
    forward, so a block gives the plain block's output, gradients and running statistics."""
    plain, again = (set_backend(m.float(), backend) for m in
                    _twins(lambda on: SANBlock(32, attention, kernel_size=K, share_planes=4, recompute=on)))
    x = torch.randn(N, 32, H, W, generator=torch.Generator().manual_seed(0))
    results = []
    for m in (plain, again):
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = m.train()(xi)
        y.float().sin().sum().backward()
        results.append((y, xi.grad))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=0, atol=0)
    torch.testing.assert_close(results[1][1], results[0][1])
    for (key, a), b in zip(plain.named_parameters(), again.parameters()):
        torch.testing.assert_close(b.grad, a.grad, msg=key)
    for (key, a), b in zip(plain.named_buffers(), again.buffers()):
        torch.testing.assert_close(b, a, msg=key, rtol=0, atol=0)


def test_recompute_checkpoints_only_when_autograd_records(monkeypatch):
    """Training with gradients: one checkpoint per attention layer and step. no_grad, inference
    mode and frozen weights with an input needing no gradient: none, and the same outputs."""
    from sanmini.nn import recompute as module
    calls = []
    real = module.checkpoint
    monkeypatch.setattr(module, "checkpoint", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    plain, again = _twins(RECOMPUTED[0][1])
    x = _x()
    for m in (plain, again):
        m.train()(x.clone().requires_grad_()).sum().backward()
    assert len(calls) == 1
    with torch.no_grad():
        torch.testing.assert_close(again.train()(x), plain.train()(x))
    with torch.inference_mode():
        torch.testing.assert_close(again.eval()(x), plain.eval()(x))
    for p in again.parameters():
        p.requires_grad_(False)
    torch.testing.assert_close(again.eval()(x), plain.eval()(x))
    assert len(calls) == 1


def _saved_bytes(block, x) -> int:
    """Bytes of the distinct storages that a forward of ``block`` keeps for its backward: the
    tensors autograd saves (seen by saved_tensors_hooks), and the inputs of the attention layer's
    weight branch, phi(x), psi(x) and x, which a checkpoint holds outside autograd's saved tensors."""
    storages = {}

    def keep(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()

    branch = block.sam.weights

    def weights(x1, x2, *rest):                  # phi(x), psi(x): the branch's inputs
        keep(x1), keep(x2)
        return branch(x1, x2, *rest)

    block.sam.weights = weights
    hook = block.sam.register_forward_hook(lambda m, i, o: keep(i[0]))
    try:
        with torch.autograd.graph.saved_tensors_hooks(lambda t: keep(t) or t, lambda t: t):
            block.train()(x)
    finally:
        hook.remove()
        del block.sam.weights
    return sum(storages.values())


@pytest.mark.parametrize("attention, ratio", [("pairwise", 0.3), ("patchwise", 0.5)])
def test_recompute_keeps_less_for_the_backward_pass(attention, ratio):
    """A SAN block of 64 channels with 7 x 7 footprints on (2, 64, 14, 14), float32: the bytes kept
    for the backward pass with recompute are 0.23 (pairwise) and 0.42 (patchwise) of those without
    (deterministic; the bounds leave a little room for changes in what the operators save)."""
    plain, again = _twins(lambda on: SANBlock(64, attention, kernel_size=7, share_planes=8, recompute=on))
    plain, again = plain.float(), again.float()
    x = torch.randn(2, 64, 14, 14, generator=torch.Generator().manual_seed(0), requires_grad=True)
    off, on = _saved_bytes(plain, x), _saved_bytes(again, x)
    # Without recompute the relation and gamma's intermediates, (2, C, 49, 196) each, dominate.
    assert off > 2 * 4 * 49 * 196 * 4
    assert on < ratio * off, (on, off, on / off)


# --- the ablation options: the depth of gamma, phi and psi shared ----------------------------------

@pytest.mark.parametrize("layers", [1, 2, 3])
def test_gamma_depth_is_layers_steps_of_bn_relu_conv(layers):
    g = gamma(6, 4, 3, layers)
    convs = [m for m in g if isinstance(m, nn.Conv2d)]
    assert len(g) == 3 * layers and len(convs) == layers
    widths = [6] + [4] * (layers - 1) + [3]
    assert [(c.in_channels, c.out_channels) for c in convs] == list(zip(widths, widths[1:]))
    assert [c.bias is not None for c in convs] == [False] * (layers - 1) + [True]
    x = torch.randn(2, 6, 9, 5, dtype=torch.float64)
    g = g.double().eval()
    expected = x
    for k in range(layers):                       # the same steps, written out
        bn, conv = g[3 * k], g[3 * k + 2]
        expected = torch.relu(F.batch_norm(expected, bn.running_mean, bn.running_var, bn.weight, bn.bias))
        expected = F.conv2d(expected, conv.weight, conv.bias)
    torch.testing.assert_close(g(x), expected)


def test_gamma_default_depth_is_the_released_layout():
    g = gamma(6, 4, 3)
    assert [type(m).__name__ for m in g] == ["BatchNorm2d", "ReLU", "Pointwise", "BatchNorm2d", "ReLU", "Pointwise"]
    assert all(isinstance(g[k], torch.nn.Conv2d) and g[k].kernel_size == (1, 1) for k in (2, 5))
    # The reference implementation's conv_w keys and shapes, so that released weights load.
    assert {k: tuple(v.shape) for k, v in g.state_dict().items() if "running" not in k and "num_batches" not in k} == \
        {"0.weight": (6,), "0.bias": (6,), "2.weight": (4, 6, 1, 1), "3.weight": (4,), "3.bias": (4,),
         "5.weight": (3, 4, 1, 1), "5.bias": (3,)}


def test_shared_phi_psi_is_one_map_and_computes_phi_against_phi():
    torch.manual_seed(0)
    shared = PairwiseAttention(16, 4, 16, share_planes=4, kernel_size=3, share="phi_psi", backend="torch").double().eval()
    separate = PairwiseAttention(16, 4, 16, share_planes=4, kernel_size=3, backend="torch").double().eval()
    assert shared.conv2 is shared.conv1
    n_params = lambda m: sum(p.numel() for p in m.parameters())          # noqa: E731
    assert n_params(separate) - n_params(shared) == 16 * 4 + 4           # one 1x1 conv fewer
    state = {k: v for k, v in shared.state_dict().items()}
    separate.load_state_dict(state)                                       # conv2 := conv1
    x = torch.randn(2, 16, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(shared(x), separate(x))
    torch.testing.assert_close(separate.conv2.weight, separate.conv1.weight)


def test_ablation_options_reach_the_models_and_default_to_the_released_ones():
    with torch.device("meta"):
        deep = sanmini.create("san10_pairwise", gamma_layers=3, share="phi_psi")
        patch = sanmini.create("san10_patchwise", gamma_layers=1)
    block = deep.layer1[0].sam
    assert block.share == "phi_psi" and block.conv2 is block.conv1
    assert sum(isinstance(m, nn.Conv2d) for m in block.conv_w) == 3
    assert sum(isinstance(m, nn.Conv2d) for m in patch.layer1[0].sam.conv_w) == 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(share="phi_beta"), r"share must be one of \('none', 'phi_psi'\) for pairwise attention, got 'phi_beta'"),
    (dict(gamma_layers=0), r"gamma_layers must be"),
    (dict(gamma_layers=2.0), r"gamma_layers must be"),
])
def test_ablation_option_errors(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        PairwiseAttention(16, 4, 16, share_planes=4, **kwargs)


# --- issue 31: booleans must be booleans; a single image gets one named line ----------------------

@pytest.mark.parametrize("make, name", [
    (lambda v: PairwiseAttention(C, 2, 8, share_planes=4, kernel_size=K, fused=v), "fused"),
    (lambda v: PairwiseAttention(C, 2, 8, share_planes=4, kernel_size=K, recompute=v), "recompute"),
    (lambda v: PairwiseAttention(C, 2, 8, share_planes=4, kernel_size=K, position_encoding=v), "position_encoding"),
    (lambda v: PatchwiseAttention(C, 2, 8, share_planes=4, kernel_size=K, recompute=v), "recompute"),
    (lambda v: sanmini.models.create("san10_pairwise", num_classes=3, width=16, share_planes=4, fused=v), "fused"),
])
@pytest.mark.parametrize("value", ["yes", "no", 1, None])
def test_flags_must_be_booleans(make, name, value):
    with pytest.raises(TypeError, match=f"{name} must be True or False, got {value!r}"):
        make(value)


@pytest.mark.parametrize("make", [
    lambda: PairwiseAttention(C, 2, 8, share_planes=4, kernel_size=K),
    lambda: PatchwiseAttention(C, 2, 8, share_planes=4, kernel_size=K),
    lambda: sanmini.nn.FixedAggregation(C, 8, share_planes=4, kernel_size=K),
])
def test_attention_layers_name_an_input_that_is_no_batch(make):
    layer = make()
    with pytest.raises(ValueError, match=rf"x must have shape \(N, {C}, H, W\), got \({C}, {H}, {W}\) "
                                         r"\(one image\? add the batch dimension: x\[None\]\)"):
        layer(torch.randn(C, H, W))
    with pytest.raises(ValueError, match=rf"x must have shape \(N, {C}, H, W\), got \(1, 3, {H}, {W}\)$"):
        layer(torch.randn(1, 3, H, W))
    assert layer(torch.randn(1, C, H, W)).shape == (1, 8, H, W)


@pytest.mark.parametrize("attention, share", [("pairwise", "none"), ("pairwise", "phi_psi"), ("patchwise", "none")])
def test_phi_psi_beta_as_one_convolution_equal_three_in_float64(attention, share):
    """sanmini.nn.maps.one_pass: phi(x), psi(x), beta(x) of a layer as one convolution, against its
    three nn.Conv2d called one by one: outputs and every gradient in float64."""
    torch.manual_seed(0)
    kw = {} if attention == "patchwise" else {"share": share}
    layer = {"pairwise": PairwiseAttention, "patchwise": PatchwiseAttention}[attention](12, 3, 8, share_planes=4, kernel_size=3, backend="torch", **kw).double()
    convs = (layer.conv1, layer.conv2, layer.conv3)
    assert stackable(convs)
    x = torch.randn(2, 12, 5, 6, dtype=torch.float64, requires_grad=True)
    got, want = one_pass(x, convs), [conv(x) for conv in convs]
    assert all(g.is_contiguous() for g in got)
    g = [torch.randn_like(w) for w in want]
    params = [x] + list(dict.fromkeys(p for conv in convs for p in conv.parameters()))
    for a, b in zip(torch.autograd.grad(got, params, g), torch.autograd.grad(want, params, g)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_one_pass_calls_maps_it_cannot_stack_one_by_one():
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    for convs in [(nn.Conv2d(4, 2, 1), nn.Conv2d(4, 2, 3, padding=1)),      # a 3 x 3
                  (nn.Conv2d(4, 2, 1), nn.Conv2d(4, 2, 1, bias=False)),    # one bias, one not
                  (nn.Conv2d(4, 2, 1), Pointwise(4, 2))]:                    # a subclass
        convs = tuple(c.double() for c in convs)
        assert not stackable(convs)
        for a, b in zip(one_pass(x, convs), [c(x) for c in convs]):
            assert torch.equal(a, b)
