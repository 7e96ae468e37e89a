"""sanmini.nn.Pointwise, the 1 x 1 convolution of gamma computed as a matrix product: the same
function, gradients, parameters and multiply-adds as ``nn.Conv2d(kernel_size=1)``."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sanmini
from sanmini.nn import Pointwise


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(2, 3, 9, 16), (1, 5, 1, 7), (3, 1, 4, 4)])
def test_equals_a_1x1_convolution_in_float64(shape, bias):
    torch.manual_seed(0)
    layer = Pointwise(shape[1], 4, bias=bias).double()
    conv = nn.Conv2d(shape[1], 4, kernel_size=1, bias=bias).double()
    conv.load_state_dict(layer.state_dict())                        # the same parameters, the same names
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    y, reference = layer(x), conv(x)
    torch.testing.assert_close(y, reference, rtol=1e-12, atol=1e-12)
    assert y.is_contiguous()
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, [x, *layer.parameters()], g)
    want = torch.autograd.grad(reference, [x, *conv.parameters()], g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(layer, (x,))


def test_a_strided_input_and_the_convolution_it_replaces():
    torch.manual_seed(0)
    layer = Pointwise(6, 3).double()
    x = torch.randn(2, 5, 9, 6, dtype=torch.float64).transpose(1, 2)[:, :6]       # (2, 6, 5, 6), not contiguous
    assert not x.is_contiguous()
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight, layer.bias), rtol=1e-12, atol=1e-12)
    assert isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1)


def test_gamma_is_built_of_pointwise_maps_and_they_are_counted_as_convolutions():
    g = sanmini.nn.gamma(10, 8, 4, layers=2)
    assert [type(m).__name__ for m in g] == ["BatchNorm2d", "ReLU", "Pointwise"] * 2
    x = (1, 10, 9, 16)
    plain = nn.Sequential(*[nn.Conv2d(m.in_channels, m.out_channels, 1, bias=m.bias is not None)
                            if isinstance(m, Pointwise) else m for m in g])
    assert sanmini.count_flops(g, x) == sanmini.count_flops(plain, x)


@pytest.mark.parametrize("shape, message", [
    ((2, 4, 3), r"x must have shape \(N, 3, A, B\), got \(2, 4, 3\)"),
    ((2, 4, 3, 3), r"x must have shape \(N, 3, A, B\), got \(2, 4, 3, 3\)"),
])
def test_a_wrong_input_is_named(shape, message):
    with pytest.raises(ValueError, match=message):
        Pointwise(3, 2)(torch.randn(shape))
