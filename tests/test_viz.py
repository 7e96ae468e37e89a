"""sanmini.viz: reading weights out of layers, and the attention explorer's data and page."""
import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sanmini.nn import FixedAggregation, PairwiseAttention, PatchwiseAttention
from sanmini.viz import AttentionExplorer, aggregation_weights, weight_variation


def test_weights_of_pairwise_layer_are_its_softmax():
    layer = PairwiseAttention(8, 2, 8, share_planes=4, kernel_size=3).eval()
    x = torch.randn(1, 8, 6, 5)
    w = aggregation_weights(layer, x)
    assert w.shape == (1, 2, 9, 6, 5)
    torch.testing.assert_close(w.sum(dim=2), torch.ones(1, 2, 6, 5))
    # The weights really are the ones the layer used: re-aggregating gives its output.
    value = F.pad(layer.conv3(x), (1, 1, 1, 1), mode="reflect").unfold(2, 3, 1).unfold(3, 3, 1)
    value = value.reshape(1, 8, 6, 5, 9).permute(0, 1, 4, 2, 3)          # (N, C, K*K, H, W)
    y = (w[:, torch.arange(8) % 2] * value).sum(dim=2)
    torch.testing.assert_close(y, layer(x).detach(), rtol=1e-5, atol=1e-5)


def test_weights_of_a_convolution_do_not_vary():
    conv = FixedAggregation(4, 8, share_planes=4, kernel_size=3)
    w = aggregation_weights(conv, torch.randn(2, 4, 5, 5))
    torch.testing.assert_close(w, conv.kernel.detach()[None, :, :, None, None].expand_as(w))
    assert weight_variation(w[0]) == 0
    patch = PatchwiseAttention(4, 2, 8, share_planes=4, kernel_size=3)
    assert weight_variation(aggregation_weights(patch, torch.randn(1, 4, 6, 6))[0]) > 0


def test_weights_by_layer_name_in_a_model():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), PairwiseAttention(8, 2, 8, share_planes=4, kernel_size=3))
    assert aggregation_weights(model, torch.randn(1, 3, 5, 5), "1").shape == (1, 2, 9, 5, 5)
    with pytest.raises(ValueError, match="has no aggregation"):
        aggregation_weights(model, torch.randn(1, 3, 5, 5), "0")


def _explorer():
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(3, 6, 5, generator=gen)
    variants = {"attention": torch.rand(2, 9, 6, 5, generator=gen),
                "conv": torch.rand(1, 25, 1, 1, generator=gen).expand(1, 25, 6, 5)}
    return AttentionExplorer(image, variants, reference="conv", caption="a <test>")


def test_explorer_page_is_self_contained_and_carries_the_weights():
    ex = _explorer()
    page = ex.to_html()
    assert "<script src" not in page and "http" not in page          # nothing loaded from elsewhere
    assert "a &lt;test&gt;" in page
    data = json.loads(re.search(r'<script type="application/json" class="sx-data">(.*?)</script>', page, re.S).group(1))
    assert (data["height"], data["width"], data["reference"]) == (6, 5, 1)
    first = data["variants"][0]
    assert (first["name"], first["k"], first["groups"]) == ("attention", 3, 2)
    levels = np.frombuffer(__import__("base64").b64decode(first["weights"]), np.uint8).reshape(2, 9, 30)
    w = np.abs(ex.variants["attention"].reshape(2, 9, 30))
    np.testing.assert_allclose(levels / 255, w / w.max(axis=1, keepdims=True), atol=1 / 255)
    assert page == ex.to_html()                                       # deterministic, so is its id


def test_explorer_footprint_and_errors():
    ex = _explorer()
    np.testing.assert_array_equal(ex.footprint("attention", 4, 3)[1], ex.variants["attention"][1, :, 4, 3].reshape(3, 3))
    with pytest.raises(ValueError, match=r"variants\['bad'\] must have shape \(Cw, K\*K, 6, 5\)"):
        AttentionExplorer(torch.rand(3, 6, 5), {"bad": torch.rand(2, 8, 6, 5)})
    with pytest.raises(ValueError, match="reference must be one of"):
        AttentionExplorer(torch.rand(3, 6, 5), {"a": torch.rand(1, 9, 6, 5)}, reference="b")


def test_explorer_reads_every_image_layout_alike():
    """CHW, HWC, one channel, (H, W), floats in [0, 1] and integers in [0, 255] give the same pixels."""
    rgb = torch.randint(0, 256, (3, 6, 5), dtype=torch.uint8)
    want = rgb.permute(1, 2, 0).numpy()
    weights = {"a": torch.rand(1, 9, 6, 5)}
    for image in (rgb, rgb.permute(1, 2, 0), rgb.numpy().astype(np.int64), rgb.double() / 255,
                  (rgb.float() / 255).permute(1, 2, 0).numpy()):
        np.testing.assert_array_equal(AttentionExplorer(image, weights).image, want)
    grey = torch.rand(6, 5)
    for image in (grey, grey[None], grey[..., None]):
        shown = AttentionExplorer(image, weights).image
        np.testing.assert_array_equal(shown, np.repeat(np.round(grey.numpy()[..., None] * 255), 3, axis=2))


@pytest.mark.parametrize("image, message", [
    (torch.rand(3, 6, 5) * 255, r"float image must hold values in \[0, 1\], got .* divide it by 255"),
    (torch.randn(3, 6, 5), r"float image must hold values in \[0, 1\].*undo the normalisation"),
    (torch.full((3, 6, 5), float("nan")), r"float image must hold values in \[0, 1\], got nan"),
    (torch.rand(4, 6, 5), r"image must have shape \(3, H, W\).* got \(4, 6, 5\) \(RGBA\?"),
    (torch.rand(6, 5, 4), r"got \(6, 5, 4\) \(RGBA\?"),
    (torch.rand(2, 3, 6, 5), r"got \(2, 3, 6, 5\)"),
    (np.full((3, 6, 5), 300), r"dtype int64 must hold values in \[0, 255\], got 300 to 300"),
    (np.ones((3, 6, 5), bool), r"got dtype bool"),
])
def test_explorer_refuses_images_it_would_misread(image, message):
    with pytest.raises(ValueError, match=message):
        AttentionExplorer(image, {"a": torch.rand(1, 9, 6, 5)})


def test_page_explorer_is_labelled_focusable_and_names_the_chosen_footprint():
    page = AttentionExplorer(torch.rand(3, 6, 5), {"a": torch.rand(1, 9, 6, 5)},
                             caption="over the {K} x {K} footprint").to_html()
    assert 'tabindex="0"' in page and 'aria-label="Image of 5 by 6 pixels' in page
    assert 'over the <span class="sx-k"></span> x <span class="sx-k"></span> footprint' in page
    for handler in ("pointermove", "pointerdown", "keydown", "ArrowUp"):
        assert handler in page
    assert "touch-action: none" in page


def test_live_widget_builds():
    box = _explorer().widget()
    dropdown = box.children[0].children[0]
    assert list(dropdown.options) == ["attention", "conv"]


def test_a_live_explorer_of_one_model_names_it_instead_of_a_menu_of_one():
    box = AttentionExplorer(torch.rand(3, 6, 5), {"only": torch.rand(1, 9, 6, 5)}).widget()
    label, hidden = box.children[0].children[:2]
    assert type(label).__name__ == "Label" and label.value == "model: only"
    assert hidden.layout.display == "none" and hidden.value == "only"


# --- the figure chooser ---------------------------------------------------------------------------

def _figures():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figures = {}
    for name, colour in (("first axis", "C0"), ("second axis", "C1")):
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot([0, 1], [0, 1], color=colour)
        figures[name] = fig
    return figures


def test_figure_chooser_embeds_every_figure_with_its_alt_text():
    import base64
    import re
    from sanmini.viz import FigureChooser
    alts = {"first axis": "a rising blue line on white", "second axis": "a rising orange line on white"}
    chooser = FigureChooser(_figures(), alts, label="ablation", caption="Pick one & see")
    page = chooser.to_html()
    images = re.findall(r'<img class="fc-figure" data-index="(\d)" alt="([^"]+)" style="([^"]*)" '
                        r'src="data:image/png;base64,([^"]+)">', page)
    assert [(i, alt) for i, alt, _, _ in images] == [("0", alts["first axis"]), ("1", alts["second axis"])]
    assert "display:none" not in images[0][2] and "display:none" in images[1][2]     # the first shows first
    for (_, _, _, data), name in zip(images, alts):
        assert base64.b64decode(data) == chooser.png[name] and chooser.png[name][:8] == b"\x89PNG\r\n\x1a\n"
    assert '<option value="0">first axis</option><option value="1">second axis</option>' in page
    assert "Pick one &amp; see" in page and "<script src" not in page


def test_figure_chooser_refuses_figures_without_alt_text():
    from sanmini.viz import FigureChooser
    with pytest.raises(ValueError, match=r"missing or too short for \['second axis'\]"):
        FigureChooser(_figures(), {"first axis": "a rising blue line on white", "second axis": "a line"})
    with pytest.raises(ValueError, match="at least one figure"):
        FigureChooser({}, {})


# --- the footprint playground ---------------------------------------------------------------------

@pytest.mark.parametrize("K,s,p,d,mode", [(3, 1, 1, 1, "zeros"), (5, 2, 4, 1, "reflect"), (3, 3, 2, 3, "reflect"),
                                          (7, 1, 6, 2, "zeros"), (1, 4, 8, 1, "zeros")])
def test_footprint_playground_reads_what_the_operators_read(K, s, p, d, mode):
    # Against torch: F.pad of an image of pixel indices, then F.unfold, gives the pixel each position
    # of each footprint reads (-1 for a zero) and the output size.
    from sanmini.viz import FootprintPlayground
    H, W = 11, 13
    play = FootprintPlayground(torch.rand(3, H, W))
    index = torch.arange(H * W, dtype=torch.float64).view(1, 1, H, W)
    padded = F.pad(index + 1, (p,) * 4, mode="constant" if mode == "zeros" else "reflect") - 1
    cols = F.unfold(padded, K, dilation=d, stride=s)                           # (1, K*K, L)
    Ho, Wo = play.output_shape(K, s, p, d)
    assert Ho * Wo == cols.shape[-1]
    for ho, wo in [(0, 0), (Ho - 1, Wo - 1), (Ho // 2, Wo // 3)]:
        taps = play.footprint(ho, wo, K, s, p, d, mode)
        got = [-1 if reads is None else reads[0] * W + reads[1] for _, _, reads in taps]
        assert got == cols[0, :, ho * Wo + wo].long().tolist()


def test_footprint_playground_page_and_errors():
    from sanmini.viz import FootprintPlayground
    play = FootprintPlayground(torch.rand(3, 8, 8), caption="Pick K & see")
    page = play.to_html()
    assert page.count("<select") == 5 and "Pick K &amp; see" in page and "<script src" not in page
    data = json.loads(re.search(r'<script type="application/json" class="fp-data">(.*?)</script>', page).group(1))
    assert (data["height"], data["width"]) == (8, 8)
    with pytest.raises(ValueError, match="reflection padding needs padding < the image's height"):
        play.footprint(0, 0, 3, 1, 8, 1, "reflect")
    with pytest.raises(ValueError, match="pad_mode must be one of"):
        play.footprint(0, 0, 3, 1, 1, 1, "circular")


# --- the explorer with facets (the relation playground) -------------------------------------------

FACETS = {"sum, on, 7": {"relation": "summation", "position": "on", "footprint": "7"},
          "sub, on, 7": {"relation": "subtraction", "position": "on", "footprint": "7"},
          "sub, off, 7": {"relation": "subtraction", "position": "off", "footprint": "7"},
          "sub, on, 5": {"relation": "subtraction", "position": "on", "footprint": "5"}}


def _faceted(**kw):
    gen = torch.Generator().manual_seed(1)
    variants = {name: torch.rand(2, 25 if name.endswith("5") else 49, 6, 5, generator=gen) for name in FACETS}
    variants["conv"] = torch.rand(1, 49, 1, 1, generator=gen).expand(1, 49, 6, 5)
    return AttentionExplorer(torch.rand(3, 6, 5, generator=gen), variants, reference="conv", facets=FACETS, **kw)


def test_closest_variant_keeps_the_asked_combination_where_it_was_trained():
    from sanmini.viz.explorer import closest_variant
    asked = lambda **kw: {**FACETS["sub, on, 7"], **kw}
    assert closest_variant(FACETS, asked(position="off"), "position") == "sub, off, 7"
    # summation was trained only with position on and 7 x 7: choosing it there keeps both
    assert closest_variant(FACETS, asked(relation="summation"), "relation") == "sum, on, 7"
    # from (sub, off, 7), asking for footprint 5 (trained only with position on) moves position
    assert closest_variant(FACETS, {"relation": "subtraction", "position": "off", "footprint": "5"},
                           "footprint") == "sub, on, 5"
    # from (sum, on, 7), asking for position off: the only variant with it is subtraction
    assert closest_variant(FACETS, asked(relation="summation", position="off"), "position") == "sub, off, 7"
    with pytest.raises(ValueError, match="no variant has position = 'maybe'"):
        closest_variant(FACETS, asked(position="maybe"), "position")


def test_faceted_page_carries_menus_and_each_variants_choice():
    ex = _faceted()
    data = json.loads(re.search(r'class="sx-data">(.*?)</script>', ex.to_html(), re.S).group(1))
    assert data["facets"] == [{"name": "relation", "values": ["summation", "subtraction"]},
                              {"name": "position", "values": ["on", "off"]},
                              {"name": "footprint", "values": ["7", "5"]}]
    assert [v["choice"] for v in data["variants"]] == [[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 0, 1], None]
    box = ex.widget()
    menus = [w for w in box.children[0].children if getattr(w, "description", "") in ("relation", "position", "footprint")]
    hidden = box.children[0].children[3]
    assert [m.description for m in menus] == ["relation", "position", "footprint"] and hidden.value == "sum, on, 7"
    menus[1].value = "off"                 # only subtraction was trained without position: the relation follows
    assert hidden.value == "sub, off, 7" and menus[0].value == "subtraction"
    menus[2].value = "5"
    assert hidden.value == "sub, on, 5" and menus[1].value == "on"


def test_faceted_explorer_errors_and_normalisation():
    with pytest.raises(ValueError, match="facets name variants that are not given: \\['nope'\\]"):
        AttentionExplorer(torch.rand(3, 6, 5), {"a": torch.rand(1, 9, 6, 5)}, facets={"nope": {"r": "x"}})
    with pytest.raises(ValueError, match="same facets in the same order"):
        AttentionExplorer(torch.rand(3, 6, 5), {"a": torch.rand(1, 9, 6, 5), "b": torch.rand(1, 9, 6, 5)},
                          facets={"a": {"r": "x"}, "b": {"s": "x"}})
    with pytest.raises(ValueError, match="give 'a' and 'b' the same values"):
        AttentionExplorer(torch.rand(3, 6, 5), {"a": torch.rand(1, 9, 6, 5), "b": torch.rand(1, 9, 6, 5)},
                          facets={"a": {"r": "x"}, "b": {"r": "x"}})
    with pytest.raises(ValueError, match="normalise must be 'footprint' or 'variant', got 'pixel'"):
        _faceted(normalise="pixel")
    ex = _faceted(normalise="variant")
    data = json.loads(re.search(r'class="sx-data">(.*?)</script>', ex.to_html(), re.S).group(1))
    levels = np.frombuffer(__import__("base64").b64decode(data["variants"][0]["weights"]), np.uint8)
    w = np.abs(ex.variants["sum, on, 7"]).ravel()
    np.testing.assert_allclose(levels / 255, w / w.max(), atol=1 / 255)   # one scale for the whole image


# --- issue 31: fused layers' weights, every bad input named, .show() outside Jupyter -------------

@pytest.mark.parametrize("train", [False, True])
def test_weights_of_a_fused_layer_are_the_plain_layers(train):
    pytest.importorskip("numba", reason="the fused layer's CPU kernels need numba (make setup installs it)")
    torch.manual_seed(0)
    plain = PairwiseAttention(6, 2, 8, share_planes=4, kernel_size=3).double()
    with torch.no_grad():
        for bn in (plain.conv_w[0], plain.conv_w[3]):
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
    fused = PairwiseAttention(6, 2, 8, share_planes=4, kernel_size=3, fused=True).double()
    fused.load_state_dict(plain.state_dict())
    x = torch.randn(2, 6, 7, 5, dtype=torch.float64)
    want = aggregation_weights(plain.train(train), x)
    got = aggregation_weights(fused.train(train), x)
    assert got.shape == (2, 2, 9, 7, 5)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    # the model ran once, as the plain one did: its running statistics moved once (in training)
    for (name, a), (_, b) in zip(plain.named_buffers(), fused.named_buffers()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12, msg=name)


def test_weights_name_a_layer_that_is_missing_or_not_run():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), PairwiseAttention(8, 2, 8, share_planes=4, kernel_size=3))
    with pytest.raises(ValueError, match=r"layer must name a submodule of the model, e.g. one of \['1'\], got '2'"):
        aggregation_weights(model, torch.randn(1, 3, 5, 5), "2")


    class OneOfTwo(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = (PairwiseAttention(3, 2, 8, share_planes=4, kernel_size=3) for _ in "ab")

        def forward(self, x):
            return self.used(x)

    with pytest.raises(ValueError, match="the model did not run 'unused' on x: name a layer its forward calls"):
        aggregation_weights(OneOfTwo(), torch.randn(1, 3, 5, 5), "unused")


@pytest.mark.parametrize("kwargs, message", [
    (dict(variants={"a": torch.full((1, 9, 6, 5), float("nan"))}),
     r"variants\['a'\] must hold finite weights, got 270 NaN or infinite values"),
    (dict(variants={"a": torch.rand(1, 9, 6, 5).index_fill(3, torch.tensor([0]), float("inf"))}),
     r"variants\['a'\] must hold finite weights, got 54 NaN or infinite"),
    (dict(variants={"a": torch.rand(0, 9, 6, 5)}), r"variants\['a'\] must have shape"),
    (dict(variants=[torch.rand(1, 9, 6, 5)]), r"variants must be a dict .* got list"),
    (dict(variants={}), r"variants must be a dict .* got an empty dict"),
    (dict(scale=0), r"scale \(screen pixels per image pixel\) must be an int from 1 to 64, got 0"),
    (dict(scale=-2), r"must be an int from 1 to 64, got -2"),
    (dict(scale="8"), r"must be an int from 1 to 64, got '8'"),
    (dict(scale=True), r"must be an int from 1 to 64, got True"),
    (dict(scale=2.5), r"must be an int from 1 to 64, got 2.5"),
    (dict(caption=None), r"caption must be a str, got NoneType"),
])
def test_explorer_names_bad_weights_and_settings(kwargs, message):
    kwargs = {"variants": {"a": torch.rand(1, 9, 6, 5)}, **kwargs}
    with pytest.raises(ValueError, match=message):
        AttentionExplorer(torch.rand(3, 6, 5), **kwargs)


def test_a_large_explorer_warns_with_the_size_of_its_page():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # a page of a few kB: no warning
        AttentionExplorer(torch.rand(3, 32, 32), {"a": torch.rand(1, 9, 32, 32)})
    side = 1024
    with pytest.warns(UserWarning, match=r"this AttentionExplorer's page embeds 16\.8 MB of image and "
                                         r"weights \(more than 8 MB\)"):
        big = AttentionExplorer(torch.rand(3, side, side), {"a": torch.rand(1, 9, side, side)})
    assert abs(len(big.to_html()) / 16.8e6 - 1) < 0.01     # the size said is the page's


@pytest.mark.parametrize("call, error, message", [
    (lambda p: p.output_shape(3, 0, 1, 1), ValueError, r"stride must be at least 1, got 0"),
    (lambda p: p.output_shape(0, 1, 1, 1), ValueError, r"K must be at least 1, got 0"),
    (lambda p: p.output_shape(3, 1, -1, 1), ValueError, r"padding must be at least 0, got -1"),
    (lambda p: p.output_shape(3, 1, 1, 0), ValueError, r"dilation must be at least 1, got 0"),
    (lambda p: p.output_shape("3", 1, 1, 1), TypeError, r"K must be an int, got '3'"),
    (lambda p: p.footprint(0, 0, 3, 0, 1, 1), ValueError, r"stride must be at least 1, got 0"),
    (lambda p: p.footprint(8, 0, 3, 1, 1, 1), ValueError, r"ho must be an output pixel, 0 to 7 \(the output is 8 x 8\), got 8"),
    (lambda p: p.footprint(0, -1, 3, 1, 1, 1), ValueError, r"wo must be at least 0, got -1"),
    (lambda p: p.footprint(0, 0, 9, 1, 0, 1), ValueError, r"the footprint does not fit: .* gives an output of 0 x 0"),
])
def test_footprint_playground_names_bad_settings(call, error, message):
    from sanmini.viz import FootprintPlayground
    with pytest.raises(error, match=message):
        call(FootprintPlayground(torch.rand(3, 8, 8)))
    with pytest.raises(ValueError, match=r"scale .* must be an int from 1 to 64, got 0"):
        FootprintPlayground(torch.rand(3, 8, 8), scale=0)


def test_show_outside_jupyter_says_where_it_displays(capsys, tmp_path):
    ex = _explorer()
    assert ex.show() is None
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert "AttentionExplorer.show() displays in a Jupyter notebook" in err and ".save('attentionexplorer.html')" in err
    path = ex.save(tmp_path / "explorer.html")
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and ex.to_html() in page


def test_show_in_a_kernel_displays_the_page(monkeypatch):
    import IPython
    import IPython.display
    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: type("Shell", (), {"kernel": object()})())
    monkeypatch.setattr(IPython.display, "display", shown.append)
    monkeypatch.setenv("SANMINI_STATIC_HTML", "1")
    ex = _explorer()
    ex.show()
    assert shown == [ex]


def test_explorer_footprint_and_weight_variation_refuse_what_they_would_misread():
    ex = _explorer()
    for row, col, message in ((-1, 0, r"row must be an int from 0 to 5, got -1"), (0, 5, r"col must be an int from 0 to 4, got 5"),
                              (1.0, 0, r"row must be an int from 0 to 5, got 1.0")):
        with pytest.raises(ValueError, match=message):
            ex.footprint("attention", row, col)
    with pytest.raises(ValueError, match=r"name must be one of \['attention', 'conv'\], got 'other'"):
        ex.footprint("other", 0, 0)
    with pytest.raises(ValueError, match=r"weights must be a floating-point tensor \(Cw, K\*K, H, W\) .* got \(1, 2, 9, 6, 5\)"):
        weight_variation(torch.rand(1, 2, 9, 6, 5))                 # the batch dimension left on


# --- issue 30: signed weights are drawn with their sign ------------------------------------------

def test_explorer_draws_signed_weights_with_their_sign_and_positive_ones_from_zero():
    gen = torch.Generator().manual_seed(0)
    kernel = torch.tensor([-1.0, 0.0, 1.0] * 3).view(1, 9, 1, 1).expand(1, 9, 4, 5)   # a (-1, 0, 1) edge kernel
    softmax = torch.rand(2, 9, 4, 5, generator=gen).softmax(dim=1)
    ex = AttentionExplorer(torch.rand(3, 4, 5, generator=gen), {"edge": kernel, "softmax": softmax})
    assert ex.signed("edge") and not ex.signed("softmax")
    with pytest.raises(ValueError, match="name must be one of \\['edge', 'softmax'\\], got 'x'"):
        ex.signed("x")
    data = json.loads(re.search(r'class="sx-data">(.*?)</script>', ex.to_html(), re.S).group(1))
    edge, soft = data["variants"]
    assert edge["signed"] is True and soft["signed"] is False
    levels = np.frombuffer(__import__("base64").b64decode(edge["weights"]), np.uint8).reshape(1, 9, 20)
    # -1, 0, 1 relative to the largest size: the two ends of the diverging scale and its middle
    np.testing.assert_array_equal(levels[0, :3, 0], [0, 128, 255])
    decoded = levels / 127.5 - 1                                     # what the page's weight() reads
    np.testing.assert_allclose(decoded[0, :, 0], kernel[0, :, 0, 0].numpy(), atol=1 / 127.5)
    soft_levels = np.frombuffer(__import__("base64").b64decode(soft["weights"]), np.uint8).reshape(2, 9, 20)
    w = softmax.reshape(2, 9, 20).numpy()
    np.testing.assert_allclose(soft_levels / 255, w / w.max(axis=1, keepdims=True), atol=1 / 255)
    page = ex.to_html()
    assert "RdBu_r" in page and "v.signed ? b / 127.5 - 1" in page   # the page decodes the sign
    assert torch.equal(kernel, torch.tensor([-1.0, 0.0, 1.0] * 3).view(1, 9, 1, 1).expand(1, 9, 4, 5))  # untouched
