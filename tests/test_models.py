"""sanmini.models: the nine models of the paper, their parameters, layout, FLOPs, checkpoints."""
import json
from pathlib import Path

import pytest
import torch

from sanmini.models import MODELS, count_flops, create, load_pretrained

LAYOUT = json.loads((Path(__file__).parent / "data" / "san_released_checkpoint_layout.json").read_text())

# Zhao et al., CVPR 2020, Table 1 (parameters and multiply-adds at 224 x 224, exact counts of the
# reference implementation; the paper rounds them to 10.5M / 2.2G and so on).
PAPER = {
    "san10_pairwise": (10_531_848, 2_155_268_622),
    "san10_patchwise": (11_841_124, 1_865_421_568),
    "san15_pairwise": (14_065_436, 3_022_716_308),
    "san15_patchwise": (16_181_310, 2_582_850_560),
    "san19_pairwise": (17_596_156, 3_844_152_602),
    "san19_patchwise": (20_518_470, 3_258_984_704),
    "resnet26": (13_696_552, 2_361_448_960),
    "resnet38": (19_626_792, 3_241_686_528),
    "resnet50": (25_557_032, 4_121_924_096),
}


def _meta(name, **kw):
    with torch.device("meta"):   # shapes only: no memory, no initialisation time
        return create(name, **kw)


def test_every_model_is_listed():
    assert set(MODELS) == set(PAPER)


@pytest.mark.parametrize("name", MODELS)
def test_parameters_and_flops_match_the_paper(name):
    params, flops = PAPER[name]
    model = _meta(name)
    assert sum(p.numel() for p in model.parameters()) == params
    assert count_flops(model) == flops
    assert round(params / 1e6, 1) == {10_531_848: 10.5, 11_841_124: 11.8, 14_065_436: 14.1,
                                      16_181_310: 16.2, 17_596_156: 17.6, 20_518_470: 20.5,
                                      13_696_552: 13.7, 19_626_792: 19.6, 25_557_032: 25.6}[params]


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_state_dict_is_the_released_layout(name):
    """Keys, order and shapes exactly those of the released checkpoints (module. prefix dropped)."""
    got = [(k, list(v.shape)) for k, v in _meta(name).state_dict().items()]
    assert got == list(LAYOUT[name].items())


def _tiny(name, **kw):
    """A narrow SAN (or ResNet) for 64 x 64 images, quick on a CPU."""
    if name.startswith("san"):
        return create(name, num_classes=5, width=16, share_planes=4, kernel_size=3, **kw)
    return create(name, num_classes=5, width=8)


@pytest.mark.parametrize("name", ["san10_pairwise", "san10_patchwise", "resnet26"])
def test_forward_and_one_sgd_step(name):
    torch.manual_seed(0)
    model = _tiny(name)
    x, target = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 3])
    for train in (False, True):
        logits = model.train(train)(x)
        assert logits.shape == (4, 5) and torch.isfinite(logits).all()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss = torch.nn.functional.cross_entropy(model(x), target)
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = torch.nn.functional.cross_entropy(model(x), target)
    assert after < loss


@pytest.mark.parametrize("name", ["san10_pairwise", "san10_patchwise"])
def test_recompute_trains_the_same_weights(name):
    """``create(name, recompute=True)`` from the plain model's weights: every attention layer
    recomputes, and two SGD steps in training mode give the same losses, gradients, weights and
    batch-norm running statistics (float64)."""
    torch.manual_seed(0)
    plain = _tiny(name).double()
    again = _tiny(name, recompute=True).double()
    again.load_state_dict(plain.state_dict())
    assert [m.sam.recompute for m in again.modules() if hasattr(m, "sam")] == [True] * 10
    assert not any(m.sam.recompute for m in plain.modules() if hasattr(m, "sam"))
    x = torch.randn(4, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 1, 2, 3])
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (plain, again)]
    for _ in range(2):
        losses = []
        for model, opt in zip((plain, again), opts):
            loss = torch.nn.functional.cross_entropy(model.train()(x), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss)
        torch.testing.assert_close(losses[1], losses[0])
        for (key, a), b in zip(plain.named_parameters(), again.parameters()):
            torch.testing.assert_close(b.grad, a.grad, msg=key)
    for (key, a), b in zip(plain.state_dict().items(), again.state_dict().values()):
        torch.testing.assert_close(b, a, msg=key)


def test_default_san_runs_at_full_size():
    model = create("san10_pairwise").eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 224, 224))
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()


@pytest.mark.parametrize("relation", ["summation", "concatenation", "hadamard", "dot"])
def test_pairwise_ablations_build(relation):
    model = _tiny("san10_pairwise", relation=relation, position_encoding=False)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    assert model.layer0[0].sam.relation == relation and not model.layer0[0].sam.position_encoding


@pytest.mark.parametrize("relation", ["star", "clique"])
def test_patchwise_ablations_build(relation):
    assert _tiny("san10_patchwise", relation=relation)(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_backend_override_reaches_every_op():
    model = create("san10_pairwise", backend="torch")
    backends = {m.backend for m in model.modules() if hasattr(m, "backend")}
    assert backends == {"torch"}


def test_footprint_override():
    model = _meta("san10_pairwise", kernels=(3, 5, 5, 5, 5))
    assert [model.get_submodule(f"layer{k}.0.sam.aggregation").kernel_size for k in range(5)] == [3, 5, 5, 5, 5]


@pytest.mark.parametrize("call, message", [
    (lambda: create("san12_pairwise"), r"unknown model name 'san12_pairwise'; choose one of"),
    (lambda: create("san10_pairwise", relation="division"), r"relation must be one of"),
    (lambda: create("san10_patchwise", relation="subtraction"), r"for patchwise"),
    (lambda: create("san10_pairwise", kernel_size=4), r"kernel_size must be an odd positive int"),
    (lambda: create("san10_pairwise", share_planes=6), r"share_planes=6 must divide the value width out_planes=16"),
    (lambda: create("san10_patchwise", position_encoding=False), r"unknown overrides \['position_encoding'\] for san10_patchwise"),
    (lambda: create("resnet26", relation="dot"), r"unknown overrides \['relation'\] for resnet26"),
    (lambda: create("resnet26", recompute=True), r"unknown overrides \['recompute'\] for resnet26"),
    (lambda: create("san10_pairwise", layers=(1, 1)), r"layers must give 5 values, one per stage, got \(1, 1\)"),
])
def test_bad_configuration(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- load_pretrained, on stand-in checkpoints written in the released format by the test ----------

def _released_standin(name, tmp_path, wrap=True, prefix="module."):
    """A file shaped like a released checkpoint: {'state_dict': {'module.' + key: tensor}}."""
    torch.manual_seed(1)
    state = {prefix + k: v for k, v in _tiny(name).state_dict().items()}
    path = tmp_path / f"{name}.pth"
    torch.save({"epoch": 100, "state_dict": state} if wrap else state, path)
    return path


@pytest.mark.parametrize("wrap, prefix", [(True, "module."), (False, ""), (True, "")])
def test_load_pretrained_roundtrip(tmp_path, wrap, prefix):
    path = _released_standin("san10_pairwise", tmp_path, wrap, prefix)
    source = torch.load(path, weights_only=True)
    source = source["state_dict"] if wrap else source
    model = load_pretrained(_tiny("san10_pairwise"), path)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, source[prefix + k])


def test_load_pretrained_by_name(tmp_path):
    state = {"module." + k: v for k, v in create("resnet26").state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "r26.pth")
    model = load_pretrained("resnet26", tmp_path / "r26.pth")
    torch.testing.assert_close(model.fc.weight, state["module.fc.weight"])


def test_load_pretrained_wrong_model_is_all_or_nothing(tmp_path):
    """A patchwise checkpoint into a pairwise model, and the other way round."""
    model = _tiny("san10_pairwise")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as err:
        load_pretrained(model, _released_standin("san10_patchwise", tmp_path))
    text = str(err.value)
    assert "20 missing keys (layer0.0.sam.conv_p.weight, layer0.0.sam.conv_p.bias" in text
    assert "first shape mismatch: layer0.0.sam.conv_w.0.weight is (10,) in the checkpoint but (3,) in the model" in text
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(ValueError, match=r"does not fit the model SAN: 20 unexpected keys \(layer0.0.sam.conv_p.weight"):
        load_pretrained(_tiny("san10_patchwise"), _released_standin("san10_pairwise", tmp_path))


def test_load_pretrained_other_width_names_the_shape(tmp_path):
    path = _released_standin("san10_pairwise", tmp_path)
    with pytest.raises(ValueError, match=r"first shape mismatch: conv_in.weight is \(16, 3, 1, 1\) in the checkpoint but \(64, 3, 1, 1\)"):
        load_pretrained("san10_pairwise", path)


def test_load_pretrained_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint file at"):
        load_pretrained(_tiny("resnet26"), tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a checkpoint written by torch.save"):
        load_pretrained(_tiny("resnet26"), tmp_path / "junk.pth")
    torch.save({"state_dict": [1, 2]}, tmp_path / "list.pth")
    with pytest.raises(ValueError, match="holds no state dict"):
        load_pretrained(_tiny("resnet26"), tmp_path / "list.pth")


@pytest.mark.parametrize("kwargs, smallest", [({}, 128), ({"kernel_size": 3}, 64), ({"pad_mode": "zeros"}, 32)])
def test_a_san_names_its_smallest_input(kwargs, smallest):
    """Stage k works at 1/2^(k+1) of the input; a reflection-padded K x K footprint needs more
    than (K - 1) / 2 pixels there. The model says so before any operator does."""
    model = create("san10_pairwise", num_classes=3, width=16, share_planes=4, **kwargs).eval()
    assert model.min_input_size == smallest
    with torch.no_grad():
        assert model(torch.randn(1, 3, smallest, smallest)).shape == (1, 3)
        with pytest.raises(ValueError, match=f"needs inputs of at least {smallest} x {smallest} pixels.*"
                                             rf"got \({smallest - 1}, {smallest}\)"):
            model(torch.randn(1, 3, smallest - 1, smallest))


@pytest.mark.parametrize("content, says", [
    (b"", "is empty: expected a checkpoint written by torch.save"),
    (b"model weights, honestly\n", r"is not a checkpoint written by torch.save .*: it starts with b.model w"),
    (b"PK\x03\x04 truncated zip", r"is not a checkpoint written by torch.save \("),
])
def test_a_file_that_is_no_checkpoint_is_named_with_what_was_expected(tmp_path, content, says):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    model = create("resnet26", num_classes=3, width=8)
    with pytest.raises(ValueError, match=f"{path} {says}"):
        load_pretrained(model, path)
    from sanmini.train.checkpoint import load
    with pytest.raises(ValueError, match=f"{path} {says}"):
        load(path)


def test_a_dict_without_a_state_dict_names_its_keys(tmp_path):
    model = create("resnet26", num_classes=3, width=8)
    path = tmp_path / "wrapped.pth"
    torch.save({"model": model.state_dict(), "epoch": 3}, path)
    with pytest.raises(ValueError, match="holds no state dict: .* got a dict with the keys 'model', 'epoch'"):
        load_pretrained(model, path)


def _pairwise(**kw):
    from sanmini.nn import PairwiseAttention
    return PairwiseAttention(16, 4, 16, share_planes=4, **kw)


def _block(**kw):
    from sanmini.nn import SANBlock
    return SANBlock(64, **kw)


@pytest.mark.parametrize("build, error, says", [
    (lambda: create("san10_pairwise", share_planes=2.0), TypeError, "share_planes must be an int, got 2.0"),
    (lambda: create("san10_pairwise", share_planes="8"), TypeError, "share_planes must be an int, got '8'"),
    (lambda: create("san10_pairwise", width=16.0), TypeError, "width must be an int, got 16.0"),
    (lambda: create("san10_pairwise", kernels=7), ValueError, "kernels must give 5 values, one per stage, got 7"),
    (lambda: create("san10_pairwise", num_classes=0), ValueError, "num_classes must be at least 1, got 0"),
    (lambda: create("resnet26", width=8.0), TypeError, "width must be an int, got 8.0"),
    (lambda: create("resnet26", num_classes=-1), ValueError, "num_classes must be at least 1, got -1"),
    (lambda: _pairwise(stride=0), ValueError, "stride must be at least 1, got 0"),
    (lambda: _pairwise(pad_mode="circular"), ValueError, r"pad_mode must be one of \('zeros', 'reflect'\), got 'circular'"),
    (lambda: _pairwise(backend="gpu"), ValueError, "backend must be one of .*, got 'gpu'"),
    (lambda: _pairwise(dilation=1.5), TypeError, "dilation must be an int, got 1.5"),
    (lambda: _block(stride=2), ValueError, "SANBlock keeps the resolution .* stride must be 1, got 2"),
])
def test_bad_settings_are_refused_when_the_module_is_built(build, error, says):
    with pytest.raises(error, match=says):
        build()


def test_a_layer_with_no_relation_channel_is_refused():
    from sanmini.nn import PairwiseAttention, PatchwiseAttention
    for layer in (PairwiseAttention, PatchwiseAttention):
        with pytest.raises(ValueError, match="rel_planes must be at least 1, got 0"):
            layer(16, 0, 16, share_planes=4)


def test_count_flops_counts_other_activations_and_names_what_it_cannot_count():
    conv = torch.nn.Conv2d(3, 4, 1)
    with_relu = count_flops(torch.nn.Sequential(conv, torch.nn.ReLU()), (2, 3, 8, 8))
    with_gelu = count_flops(torch.nn.Sequential(conv, torch.nn.GELU()), (2, 3, 8, 8))
    assert with_gelu == with_relu == 3 * 4 * 64 + 4 * 64 + 4 * 64      # conv, bias, one per element
    with pytest.warns(UserWarning, match="no rule for Upsample"):
        count_flops(torch.nn.Sequential(conv, torch.nn.Upsample(scale_factor=2)), (1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"a batch of at least 1 image, got \(0, 3, 8, 8\)"):
        count_flops(conv, (0, 3, 8, 8))
