"""sanmini.traffic: the bytes each operator reads and writes, against counts worked out by hand."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import sanmini
from sanmini.traffic import TrafficCounter, spanned_bytes, traffic_bytes

F32 = 4


def test_an_elementwise_operator_reads_its_arguments_and_writes_its_result():
    a, b = torch.randn(1000), torch.randn(1000)
    assert traffic_bytes(lambda: a + b) == {"aten::add": 3 * 1000 * F32}
    c = torch.randn(1000, dtype=torch.float64)
    assert traffic_bytes(lambda: c * 2) == {"aten::mul": 2 * 1000 * 8}


def test_broadcasting_counts_the_elements_a_tensor_holds_not_those_it_is_read_as():
    col, row = torch.randn(300, 1), torch.randn(1, 200)
    assert traffic_bytes(lambda: col + row) == {"aten::add": (300 + 200 + 300 * 200) * F32}
    # expand is a view (nothing moved); the clone reads 200 distinct elements and writes 300 x 200.
    assert traffic_bytes(lambda: row.expand(300, 200).clone()) == {"aten::clone": (200 + 300 * 200) * F32}
    assert spanned_bytes(row.expand(300, 200)) == 200 * F32
    assert spanned_bytes(torch.randn(300, 200).t()) == 300 * 200 * F32
    assert spanned_bytes(torch.empty(0, 5)) == 0


def test_views_and_allocations_move_nothing_and_in_place_counts_a_tensor_once():
    x = torch.randn(40, 50)
    assert traffic_bytes(lambda: (x.view(-1), x.t(), x.detach(), x[:, :10], torch.empty(100))) == {}
    y = torch.randn(40, 50)
    assert traffic_bytes(lambda: y.relu_()) == {"aten::relu_": 40 * 50 * F32}
    assert traffic_bytes(lambda: x.t().contiguous()) == {"aten::clone": 2 * 40 * 50 * F32}


def test_a_san_operator_counts_its_own_arguments_and_result():
    n, c, cw, k, h = 2, 8, 2, 3, 6
    x, w = torch.randn(n, c, h, h), torch.randn(n, cw, k * k, h * h)
    moved = traffic_bytes(lambda: sanmini.aggregation(x, w, k, padding=1, backend="cpu"))
    assert moved == {"sanmini::aggregation": (2 * x.numel() + w.numel()) * F32}


def test_a_training_step_is_counted_operator_by_operator():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    x = torch.randn(4, 3, 10, 10)
    counter = TrafficCounter()
    with counter:
        F.relu(conv(x)).backward(torch.ones(4, 8, 10, 10))
    out = 4 * 8 * 10 * 10 * F32
    # relu reads the convolution's output and writes its own; threshold_backward reads the
    # incoming gradient and the saved result and writes the gradient (all of the output's size).
    # (A gradient that is one value expanded, as sum()'s, would count one element.)
    assert counter.bytes["aten::relu"] == 2 * out
    assert counter.bytes["aten::threshold_backward"] == 3 * out
    assert counter.calls["aten::relu"] == 1 and counter.calls["aten::convolution_backward"] == 1
    assert conv.weight.grad is not None


def test_the_counts_do_not_depend_on_the_values():
    model = sanmini.create("san10_pairwise", num_classes=3, width=16, share_planes=4, kernel_size=3, backend="cpu")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        other = x * 3 - 1
        first = traffic_bytes(lambda: model(x))
        again = traffic_bytes(lambda: model(other))
    assert first == again and sum(first.values()) > 0
    assert "sanmini::subtraction2" in first and "sanmini::aggregation" in first


@pytest.mark.parametrize("bad", [None, 3, torch.zeros(2)])
def test_traffic_bytes_wants_a_callable(bad):
    with pytest.raises(TypeError, match="fn must be a callable of no arguments"):
        traffic_bytes(bad)
