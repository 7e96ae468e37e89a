"""torch.compile over SAN models: one graph with no breaks (the operators are custom operators),
and the same outputs and gradients as the plain eager model, on both CPU backends; and
`python -m sanmini.train --compile` trains the same weights as without it.

The tests trace with the aot_eager backend (the whole forward and backward graph, through
autograd, without generating code), which compiles in seconds; inductor on a CPU takes minutes."""
import copy

import pytest
import torch

from sanmini import create
from sanmini.nn.recompute import recompute
from sanmini.train import main


def _pair(name, backend, **kw):
    # One block per stage: every kind of layer of SAN10 (stem, transitions, SAN blocks, head), in
    # half the blocks, since tracing takes time in proportion to the number of layers.
    torch.manual_seed(0)
    model = create(name, num_classes=5, width=16, share_planes=4, kernel_size=3, layers=(1, 1, 1, 1, 1),
                   backend=backend, **kw).double()
    return model, copy.deepcopy(model)


@pytest.mark.parametrize("name, backend, kw", [
    ("san10_pairwise", "cpu", {}),
    ("san10_patchwise", "cpu", {}),
    ("san10_pairwise", "torch", {"relation": "dot", "position_encoding": False}),
])
def test_compiled_model_is_one_graph_with_the_same_outputs_and_gradients(name, backend, kw):
    torch._dynamo.reset()
    eager, twin = _pair(name, backend, **kw)
    compiled = torch.compile(twin, fullgraph=True, backend="aot_eager")   # fullgraph: a break fails
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    for mode in ("train", "eval"):
        eager.train(mode == "train")
        compiled.train(mode == "train")
        y_eager, y_compiled = eager(x), compiled(x)
        torch.testing.assert_close(y_compiled, y_eager, rtol=1e-10, atol=1e-10)
    y_eager.square().sum().backward()
    y_compiled.square().sum().backward()
    for (key, a), b in zip(eager.named_parameters(), twin.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-9, atol=1e-10, msg=key)


def test_train_with_compile_gives_the_eager_weights(tmp_path):
    from sanmini.data import save_image_folder
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(12, 3, 64, 64, generator=generator)
    labels = torch.arange(12) % 3
    for split, n in (("train", 12), ("val", 6)):
        save_image_folder(list(zip(images[:n], labels[:n])), tmp_path / "data", split, ["a", "b", "c"])
    common = [str(tmp_path / "data"), "--model", "san10_pairwise", "--model-arg", "width=16",
              "--model-arg", "share_planes=4", "--model-arg", "kernel_size=3", "--model-arg", "backend=torch",
              "--model-arg", "layers=1,1,1,1,1",
              "--image-size", "64", "--epochs", "1", "--batch-size", "6", "--workers", "0", "--no-progress"]
    plain = main([*common, "--out", str(tmp_path / "plain")])
    compiled = main([*common, "--out", str(tmp_path / "compiled"), "--compile", "--compile-backend", "aot_eager"])
    saved = torch.load(tmp_path / "compiled" / "last.pt", weights_only=True)["state_dict"]
    assert not any(k.startswith("_orig_mod") for k in saved)                 # plain weights
    for key, value in plain["model"].state_dict().items():
        torch.testing.assert_close(compiled["model"].state_dict()[key], value, rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.parametrize("name", ["san10_pairwise", "san10_patchwise"])
def test_compiled_recompute_gives_the_eager_outputs_gradients_and_statistics(name):
    """Under torch.compile the weight branch is checkpointed without the eager path's buffer-saving
    context (torch.compile takes none); the traced graph still updates the batch-norm running
    statistics once per step: outputs, gradients and statistics those of eager without recompute."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = create(name, num_classes=5, width=16, share_planes=4, kernel_size=3, layers=(1, 1, 1, 1, 1),
                   backend="cpu").double()
    twin = create(name, num_classes=5, width=16, share_planes=4, kernel_size=3, layers=(1, 1, 1, 1, 1),
                  backend="cpu", recompute=True).double()
    twin.load_state_dict(eager.state_dict())
    compiled = torch.compile(twin, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    y_eager, y_compiled = eager.train()(x), compiled.train()(x)
    torch.testing.assert_close(y_compiled, y_eager, rtol=1e-10, atol=1e-10)
    y_eager.square().sum().backward()
    y_compiled.square().sum().backward()
    for (key, a), b in zip(eager.named_parameters(), twin.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-9, atol=1e-10, msg=key)
    for (key, a), b in zip(eager.named_buffers(), twin.buffers()):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12, msg=key)


class _Branch(torch.nn.Module):
    """A 1x1 convolution and a batch norm recomputed in the backward, as a SAN layer's weight branch."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4)

    def branch(self, x):
        return self.bn(self.conv(x)).relu()

    def forward(self, x):
        return recompute(self, self.branch, x).square().sum()


def test_compiled_recompute_updates_the_running_statistics_once_per_step():
    """Two training steps, compiled, against the same module without recomputation. torch 2.5 and
    2.6 replayed the region's buffer updates in the backward graph (the running mean moved 1.9
    times as far, num_batches_tracked counted 2 per step); the region now updates stand-ins and
    the buffers are written after it, once."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = _Branch().double()
    twin = copy.deepcopy(eager)
    compiled = torch.compile(twin, fullgraph=True, backend="aot_eager")
    owned = [b.data_ptr() for b in twin.buffers()]
    for step in range(2):
        x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
        eager.bn(eager.conv(x))                      # the update once, in eager mode
        compiled(x).backward()
    for (key, a), b in zip(eager.named_buffers(), twin.buffers()):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12, msg=key)
    assert [b.data_ptr() for b in twin.buffers()] == owned      # the module keeps its own buffers
    assert twin.bn.num_batches_tracked.item() == 2
