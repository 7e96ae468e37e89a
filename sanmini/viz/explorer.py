"""The attention explorer: pick a pixel of an image and see the weights alpha over its footprint.

:class:`AttentionExplorer` holds an image and, for one or more models ("variants"), the weights
(Cw, K*K, H, W) their aggregation used at every pixel. It shows them two ways:

* as self-contained HTML: the weights are embedded in the page and the interaction (hover or click a
  pixel, choose a model) is the page's own JavaScript, with no kernel and no script from elsewhere,
  so it works in the published book as in Jupyter and Colab;
* as live ipywidgets (:meth:`AttentionExplorer.widget`: sliders for the pixel, a model dropdown) in a
  running kernel.

Variants may instead be chosen by their *facets* (e.g. relation, position encoding, footprint): one
menu per facet, over the variants that were trained. A combination that was not trained is never
shown: changing one menu picks the trained variant with that value which agrees with the most of
the other menus (the first such in the order given), and the other menus follow it
(:func:`closest_variant`, which the page's JavaScript mirrors).

In the page the box on the image is the footprint R(i) of the chosen pixel i, tinted by the weights;
beside it are the footprint enlarged and, per weight channel group, alpha over the footprint
(each normalised to its largest size). Weights that are never negative (a softmax's) are drawn on a
sequential scale from 0; a variant with a negative weight anywhere (a learned kernel, patchwise
weights, an effective filter) is drawn with its sign, on a diverging scale centred on zero (blue
negative, white zero, red positive), as ``matplotlib``'s ``RdBu_r``. A convolution variant, if given
as ``reference``, is drawn next to them for comparison: its weights are the same at every pixel.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import warnings

import numpy as np
import torch

from .page import PageWidget


def _as_image(image) -> np.ndarray:
    """(3, H, W), (H, W, 3), (1, H, W), (H, W, 1) or (H, W): floats in [0, 1] or integers in
    [0, 255] -> (H, W, 3) uint8. Anything else is refused with its shape or its range: a float image
    in [0, 255] would otherwise turn white, and a (4, H, W) one be read as RGBA of height 4."""
    img = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    shape = tuple(img.shape)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = img.transpose(1, 2, 0)                   # (C, H, W) -> (H, W, C)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[-1] not in (1, 3) or 0 in img.shape:
        hint = " (RGBA? keep its first three channels)" if 4 in shape[:1] + shape[-1:] else ""
        raise ValueError(f"image must have shape (3, H, W), (H, W, 3), (1, H, W), (H, W, 1) or (H, W), "
                         f"got {shape}{hint}")
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.bool_ or not np.issubdtype(img.dtype, np.number) or np.iscomplexobj(img):
        raise ValueError(f"image must hold floats in [0, 1] or integers in [0, 255], got dtype {img.dtype}")
    low, high = float(img.min()), float(img.max())
    if np.issubdtype(img.dtype, np.integer):
        if low < 0 or high > 255:
            raise ValueError(f"image of dtype {img.dtype} must hold values in [0, 255], got {low:g} to {high:g}")
        return img.astype(np.uint8)
    if not (np.isfinite(low) and np.isfinite(high)) or low < -1e-3 or high > 1 + 1e-3:   # rounding passes
        hint = (" (a 0-255 image: divide it by 255 or pass it as uint8)" if high > 1 and low >= 0 else
                " (a normalised image: undo the normalisation first)" if low < 0 else "")
        raise ValueError(f"a float image must hold values in [0, 1], got {low:g} to {high:g}{hint}")
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def closest_variant(facets: dict, wanted: dict, changed: str) -> str:
    """The variant the menus show after the reader set facet ``changed`` to ``wanted[changed]``.

    ``facets``: variant name -> {facet: value}; ``wanted``: facet -> the value each menu asks for.
    Among the variants with that value of ``changed``, the one agreeing with the most of the other
    menus, the first such in the order of ``facets``: the asked-for combination where it was trained.
    """
    candidates = [name for name, f in facets.items() if f[changed] == wanted[changed]]
    if not candidates:
        raise ValueError(f"no variant has {changed} = {wanted[changed]!r}")
    return max(candidates, key=lambda name: (sum(facets[name][key] == value for key, value in wanted.items()),
                                             -candidates.index(name)))


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.uint8).tobytes()).decode("ascii")


LARGE_PAGE_BYTES = 8_000_000     # a page embedding more than this warns: slow in a notebook or book


def _check_scale(scale) -> None:
    """``scale``, screen pixels per image pixel, must be an int from 1 to 64."""
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or not 1 <= scale <= 64:
        raise ValueError(f"scale (screen pixels per image pixel) must be an int from 1 to 64, got {scale!r}")


def embedded_bytes(*arrays: np.ndarray) -> int:
    """The bytes the page embeds for these arrays, one byte per value, in base64."""
    return sum(4 * -(-int(np.size(a)) // 3) for a in arrays)


def _warn_if_large(name: str, size: int) -> None:
    if size > LARGE_PAGE_BYTES:
        warnings.warn(f"this {name}'s page embeds {size / 1e6:.1f} MB of image and weights (more than "
                      f"{LARGE_PAGE_BYTES / 1e6:.0f} MB): slow to load in a notebook or book page; crop or "
                      f"downsample the image, or give fewer variants", stacklevel=3)


class AttentionExplorer(PageWidget):
    """An image and, per named variant, the aggregation weights at each of its pixels.

    Args:
        image: (3, H, W) or (H, W, 3) (or one channel, or (H, W)), floats in [0, 1] or integers in
            [0, 255]: the picture the weights belong to, at the resolution of the weights.
        variants: name -> weights (Cw, K*K, H, W), e.g. ``aggregation_weights(model, x, layer)[0]``.
            K may differ between variants.
        reference: the name of a variant drawn beside the chosen one (e.g. a convolution).
        scale: screen pixels per image pixel.
        caption: text under the page's explorer; ``{K}`` in it shows the footprint side of the
            model chosen in the menu (``"the {K} x {K} footprint"``).
        facets: optional, variant name -> {facet: value}, the same facets for every variant named
            (e.g. ``{"relation": "summation", "position encoding": "on", "footprint": "7 x 7"}``):
            the page then has one menu per facet instead of one model menu, over the variants named
            here; a variant left out (e.g. the reference) is only drawn beside.
        normalise: ``"footprint"`` (default) scales alpha by the largest size ``|alpha|`` of each
            footprint, which shows the shape of the weights everywhere; ``"variant"`` by the largest
            size of the variant over the whole image, which also shows where the weights are small.
            A variant with a negative weight keeps its sign (``signed``).

    Refused with a ValueError naming the argument: an image it would misread (see ``_as_image``),
    weights of another shape than (Cw, K*K, H, W) or holding NaN or infinity, a ``scale`` that is
    not an int from 1 to 64, facets that do not match the variants. A page that embeds more than
    ``LARGE_PAGE_BYTES`` (8 MB) of image and weights is made, with a warning that gives its size.
    """

    def __init__(self, image, variants: dict, reference: str | None = None, scale: int = 8,
                 caption: str = "", facets: dict | None = None, normalise: str = "footprint"):
        self.image = _as_image(image)
        height, width = self.image.shape[:2]
        if not isinstance(variants, dict) or not variants:
            given = "an empty dict" if isinstance(variants, dict) else type(variants).__name__
            raise ValueError(f"variants must be a dict naming at least one set of weights, name -> "
                             f"(Cw, K*K, H, W), got {given}")
        self.variants = {}
        for name, w in variants.items():
            w = w.detach().cpu().float().numpy() if isinstance(w, torch.Tensor) else np.asarray(w, np.float32)
            k = int(round(np.sqrt(w.shape[1]))) if w.ndim == 4 else 0
            if w.ndim != 4 or k * k != w.shape[1] or 0 in w.shape[:2] or w.shape[2:] != (height, width):
                raise ValueError(f"variants[{name!r}] must have shape (Cw, K*K, {height}, {width}) "
                                 f"to match the image, got {tuple(w.shape)}")
            bad = int(np.size(w) - np.isfinite(w).sum())
            if bad:
                raise ValueError(f"variants[{name!r}] must hold finite weights, got {bad} NaN or infinite "
                                 f"values (the page would draw undefined levels)")
            self.variants[name] = w
        if reference is not None and reference not in self.variants:
            raise ValueError(f"reference must be one of {list(self.variants)}, got {reference!r}")
        _check_scale(scale)
        if not isinstance(caption, str):
            raise ValueError(f"caption must be a str, got {type(caption).__name__}")
        self.reference, self.scale, self.caption = reference, int(scale), caption
        if normalise not in ("footprint", "variant"):
            raise ValueError(f"normalise must be 'footprint' or 'variant', got {normalise!r}")
        self.normalise = normalise
        self.facets = self._check_facets(facets) if facets is not None else None
        _warn_if_large(type(self).__name__, embedded_bytes(self.image, *self.variants.values()))

    def _check_facets(self, facets: dict) -> dict:
        if not facets:
            raise ValueError("facets must name at least one variant, or be None")
        unknown = [name for name in facets if name not in self.variants]
        if unknown:
            raise ValueError(f"facets name variants that are not given: {unknown}; variants are {self.names}")
        keys = [list(f) for f in facets.values()]
        if not keys[0] or any(k != keys[0] for k in keys):
            raise ValueError(f"facets must give every variant the same facets in the same order, got {keys}")
        seen = {}
        for name, f in facets.items():
            combination = tuple(str(v) for v in f.values())
            if combination in seen:
                raise ValueError(f"facets give {seen[combination]!r} and {name!r} the same values {combination}")
            seen[combination] = name
        return {name: {key: str(value) for key, value in f.items()} for name, f in facets.items()}

    @property
    def facet_values(self) -> dict:
        """facet -> its values, in the order the variants first use them ({} without facets)."""
        if self.facets is None:
            return {}
        values = {key: [] for key in next(iter(self.facets.values()))}
        for f in self.facets.values():
            for key, value in f.items():
                if value not in values[key]:
                    values[key].append(value)
        return values

    @property
    def names(self) -> list[str]:
        return list(self.variants)

    def footprint(self, name: str, row: int, col: int) -> np.ndarray:
        """(Cw, K, K): the weights of variant ``name`` over the footprint of pixel (row, col).
        An unknown name, or a pixel outside the image (a negative index would count from the end),
        is refused."""
        if name not in self.variants:
            raise ValueError(f"name must be one of {self.names}, got {name!r}")
        for axis, value, size in (("row", row, self.image.shape[0]), ("col", col, self.image.shape[1])):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < size:
                raise ValueError(f"{axis} must be an int from 0 to {size - 1}, got {value!r}")
        w = self.variants[name]
        k = int(round(np.sqrt(w.shape[1])))
        return w[:, :, row, col].reshape(w.shape[0], k, k)

    def signed(self, name: str) -> bool:
        """Whether variant ``name`` holds a negative weight anywhere, and so is drawn with its sign
        on a diverging scale centred on zero (otherwise on a sequential scale from zero)."""
        if name not in self.variants:
            raise ValueError(f"name must be one of {self.names}, got {name!r}")
        return bool((self.variants[name] < 0).any())

    # --- the page: HTML + JavaScript, no kernel -----------------------------------------------

    def _data(self) -> dict:
        height, width = self.image.shape[:2]
        variants, values = [], self.facet_values
        for name, w in self.variants.items():
            magnitude = np.abs(w)
            if self.normalise == "footprint":
                peak = np.maximum(magnitude.max(axis=1, keepdims=True), 1e-12)
            else:
                peak = max(float(magnitude.max()), 1e-12)
            signed = self.signed(name)
            # Byte levels: 0..255 for 0..peak; with a sign, 0..255 for -peak..peak (zero at 127.5).
            levels = np.round(127.5 * (1 + w / peak)) if signed else np.round(255 * magnitude / peak)
            variant = {"name": name, "k": int(round(np.sqrt(w.shape[1]))), "groups": int(w.shape[0]),
                       "signed": signed, "weights": _b64(levels.reshape(w.shape[0], w.shape[1], -1))}
            if self.facets is not None:
                variant["choice"] = ([values[key].index(v) for key, v in self.facets[name].items()]
                                     if name in self.facets else None)
            variants.append(variant)
        data = {"height": height, "width": width, "scale": self.scale, "image": _b64(self.image),
                "variants": variants, "reference": self.names.index(self.reference) if self.reference else -1}
        if self.facets is not None:
            data["facets"] = [{"name": key, "values": v} for key, v in values.items()]
        return data

    def to_html(self) -> str:
        data = json.dumps(self._data(), separators=(",", ":"))
        uid = "sx-" + hashlib.sha1(data.encode()).hexdigest()[:10]
        caption = html.escape(self.caption).replace("{K}", '<span class="sx-k"></span>')
        caption = f'<p class="sx-caption">{caption}</p>' if caption else ""
        height, width = self.image.shape[:2]
        label = (f"Image of {width} by {height} pixels with the footprint of the chosen pixel drawn "
                 f"on it. Arrow keys move the pixel; the weights are shown beside the image.")
        return (_TEMPLATE.replace("__ID__", uid).replace("__CAPTION__", caption).replace("__LABEL__", label)
                .replace("__DATA__", data.replace("</", "<\\/")).replace("__SCRIPT__", _SCRIPT))


    # --- a running kernel: ipywidgets ----------------------------------------------------------

    def widget(self):
        """Live controls (model dropdown, row and column sliders) and a matplotlib view."""
        import ipywidgets as widgets
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle

        height, width = self.image.shape[:2]
        if self.facets is None and len(self.names) == 1:     # nothing to choose: say which, as the page does
            choose = widgets.Dropdown(options=self.names, layout=widgets.Layout(display="none"))
            menus = [widgets.Label(f"model: {self.names[0]}")]
        elif self.facets is None:
            choose = widgets.Dropdown(options=self.names, description="model")
            menus = []
        else:                      # one menu per facet; the chosen variant is held in a hidden dropdown
            choose = widgets.Dropdown(options=list(self.facets), layout=widgets.Layout(display="none"))
            menus = [widgets.Dropdown(options=values, value=self.facets[choose.value][key], description=key,
                                      style={"description_width": "initial"})
                     for key, values in self.facet_values.items()]
            syncing = []

            def pick(change):
                if syncing:
                    return
                key = change["owner"].description
                wanted = {menu.description: menu.value for menu in menus}
                syncing.append(True)
                try:
                    choose.value = closest_variant(self.facets, wanted, key)
                    for menu in menus:
                        menu.value = self.facets[choose.value][menu.description]
                finally:
                    syncing.clear()

            for menu in menus:
                menu.observe(pick, names="value")
        row = widgets.IntSlider(value=height // 2, min=0, max=height - 1, description="row")
        col = widgets.IntSlider(value=width // 2, min=0, max=width - 1, description="column")
        out = widgets.Output()

        def draw(*_):
            shown = [choose.value] + ([self.reference] if self.reference and self.reference != choose.value else [])
            panels = [(name, g) for name in shown for g in range(self.variants[name].shape[0])]
            with out:
                out.clear_output(wait=True)
                fig, axes = plt.subplots(1, 1 + len(panels), figsize=(2.6 * (1 + len(panels)), 2.8))
                axes[0].imshow(self.image)
                k = int(round(np.sqrt(self.variants[choose.value].shape[1])))
                axes[0].add_patch(Rectangle((col.value - k // 2 - 0.5, row.value - k // 2 - 0.5), k, k,
                                            fill=False, color="red"))
                axes[0].set_title(f"pixel ({row.value}, {col.value})")
                for ax, (name, g) in zip(axes[1:], panels):
                    w = self.footprint(name, row.value, col.value)[g]
                    if self.signed(name):               # diverging, centred on zero
                        size = max(float(np.abs(w).max()), 1e-12)
                        ax.imshow(w, cmap="RdBu_r", vmin=-size, vmax=size)
                    else:
                        ax.imshow(w, cmap="magma", vmin=0)
                    ax.set_title(f"{name}\ngroup {g}", fontsize=9)
                for ax in axes:
                    ax.set_xticks([])
                    ax.set_yticks([])
                plt.show()

        for control in (choose, row, col):
            control.observe(draw, names="value")
        draw()
        return widgets.VBox([widgets.HBox([*menus, choose, row, col]), out])



_TEMPLATE = """<div class="sanmini-explorer" id="__ID__" data-pixel="" data-variant="">
<style>
#__ID__ {font-family: sans-serif; font-size: 13px; margin: 0.5em 0 1em 0;}
#__ID__ .sx-controls {margin-bottom: 6px;}
#__ID__ .sx-menus label {margin-right: 10px; white-space: nowrap; display: inline-block;}
#__ID__ .sx-readout {display: block; margin-top: 3px; color: #444; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis;}  /* one line, whatever it says: the image below never moves under a finger */
#__ID__ .sx-body {display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start;}
#__ID__ .sx-panel {display: flex; flex-direction: column; align-items: center; gap: 3px;}
#__ID__ canvas {image-rendering: pixelated; border: 1px solid #ccc;}
#__ID__ canvas.sx-image {cursor: crosshair; touch-action: none; max-width: 100%; height: auto;}
#__ID__ canvas.sx-image:focus-visible {outline: 3px solid #1a73e8; outline-offset: 2px;}
#__ID__ .sx-label {font-size: 12px; color: #333; text-align: center; max-width: 170px;}
#__ID__ .sx-caption {font-size: 12px; color: #555; margin: 4px 0 0 0;}
/* On a phone the image and the weight maps it changes must be on screen together: the image at most
   half the screen's height, the enlarged footprint and the maps three to a row below it. */
@media (max-width: 600px) {
  #__ID__ .sx-body {gap: 8px;}
  #__ID__ .sx-body > .sx-panel:first-child {flex-basis: 100%;}
  #__ID__ canvas.sx-image {max-height: 45vh; width: auto;}
  #__ID__ .sx-groups {gap: 8px !important;}
  #__ID__ canvas.sx-patch, #__ID__ .sx-groups canvas {max-width: 27vw; height: auto;}
  #__ID__ .sx-label {max-width: 27vw; font-size: 11px;}
}
</style>
<div class="sx-controls"><span class="sx-menus"></span>
<span class="sx-readout" aria-live="polite">hover over, tap or drag on a pixel, or focus the image and use the arrow keys</span></div>
<div class="sx-body">
<div class="sx-panel"><canvas class="sx-image" tabindex="0" role="application" aria-roledescription="attention explorer" aria-label="__LABEL__"></canvas><span class="sx-label">image: the box is the footprint R(i)</span></div>
<div class="sx-panel"><canvas class="sx-patch"></canvas><span class="sx-label">the footprint, enlarged</span></div>
<div class="sx-groups" style="display:flex;gap:14px;flex-wrap:wrap"></div>
</div>
__CAPTION__
<script type="application/json" class="sx-data">__DATA__</script>
<script>(function(){var root=document.getElementById("__ID__");__SCRIPT__})();</script>
</div>"""

# The page's own JavaScript: decodes the embedded weights and redraws on hover and click.
_SCRIPT = r"""
var D = JSON.parse(root.querySelector(".sx-data").textContent);
function bytes(s) { var b = atob(s), a = new Uint8Array(b.length); for (var i = 0; i < b.length; i++) a[i] = b.charCodeAt(i); return a; }
var H = D.height, W = D.width, S = D.scale, img = bytes(D.image);
D.variants.forEach(function (v) { v.w = bytes(v.weights); });
var STOPS = [[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]];       // magma
var SIGNED = [[5, 48, 97], [42, 113, 178], [107, 172, 209], [194, 221, 236], [247, 246, 246],   // RdBu_r
  [251, 204, 180], [228, 128, 102], [186, 40, 50], [103, 0, 31]];
function colour(t, stops) {
  stops = stops || STOPS;
  var x = Math.min(Math.max(t, 0), 1) * (stops.length - 1), i = Math.min(Math.floor(x), stops.length - 2), f = x - i;
  return "rgb(" + [0, 1, 2].map(function (c) { return Math.round(stops[i][c] + f * (stops[i + 1][c] - stops[i][c])); }).join(",") + ")";
}
var base = document.createElement("canvas"); base.width = W; base.height = H;
var bctx = base.getContext("2d"), data = bctx.createImageData(W, H);
for (var p = 0; p < W * H; p++) { for (var c = 0; c < 3; c++) data.data[4 * p + c] = img[3 * p + c]; data.data[4 * p + 3] = 255; }
bctx.putImageData(data, 0, 0);
var canvas = root.querySelector(".sx-image"), ctx = canvas.getContext("2d");
canvas.width = W * S; canvas.height = H * S;
var menus = root.querySelector(".sx-menus");
function menu(label, cls, options) {
  var l = document.createElement("label"), s = document.createElement("select");
  l.textContent = label + " "; s.className = cls;
  options.forEach(function (t, i) { var o = document.createElement("option"); o.value = i; o.textContent = t; s.appendChild(o); });
  l.appendChild(s); menus.appendChild(l); return s;
}
var state = {variant: 0, row: Math.floor(H / 2), col: Math.floor(W / 2)};
if (D.facets) {
  // One menu per facet. The trained variant with the value just chosen that agrees with the most
  // other menus (the first such) is shown, and the other menus follow it (closest_variant in Python).
  var facetMenus = D.facets.map(function (f) { var s = menu(f.name, "sx-facet", f.values); s.dataset.facet = f.name; return s; });
  var sync = function () { var c = D.variants[state.variant].choice; facetMenus.forEach(function (s, k) { s.value = c[k]; }); };
  facetMenus.forEach(function (s, k) {
    s.addEventListener("change", function () {
      var want = facetMenus.map(function (m) { return +m.value; }), best = -1, score = -1;
      D.variants.forEach(function (v, i) {
        if (!v.choice || v.choice[k] !== want[k]) return;
        var agree = 0; for (var f = 0; f < want.length; f++) if (v.choice[f] === want[f]) agree++;
        if (agree > score) { score = agree; best = i; }
      });
      state.variant = best; sync(); draw();
    });
  });
  while (!D.variants[state.variant].choice) state.variant++;
  sync();
} else if (D.variants.length > 1) {
  var select = menu("model", "sx-variant", D.variants.map(function (v) { return v.name; }));
  select.addEventListener("change", function () { state.variant = +select.value; draw(); });
} else {                                   // one model: its name, not a menu with one choice
  var only = document.createElement("span"); only.className = "sx-model"; only.textContent = "model: " + D.variants[0].name;
  menus.appendChild(only);
}
// A weight relative to its scale: 0..1, or -1..1 for a variant drawn with its sign.
function weight(v, g, j, row, col) { var kk = v.k * v.k, b = v.w[(g * kk + j) * H * W + row * W + col]; return v.signed ? b / 127.5 - 1 : b / 255; }
function reflect(i, n) { return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i); }
function grid(cv, k, cell, fill) {
  cv.width = k * cell; cv.height = k * cell; var c2 = cv.getContext("2d");
  for (var a = 0; a < k; a++) for (var b = 0; b < k; b++) { c2.fillStyle = fill(a, b); c2.fillRect(b * cell, a * cell, cell, cell); }
  return c2;
}
function panel(container, title, k, fill) {
  var div = document.createElement("div"); div.className = "sx-panel";
  var cv = document.createElement("canvas"); grid(cv, k, Math.max(12, Math.floor(120 / k)), fill);
  var label = document.createElement("span"); label.className = "sx-label"; label.textContent = title;
  div.appendChild(cv); div.appendChild(label); container.appendChild(div);
}
function draw() {
  var v = D.variants[state.variant], k = v.k, h = Math.floor(k / 2), r = state.row, c = state.col;
  ctx.imageSmoothingEnabled = false; ctx.drawImage(base, 0, 0, W * S, H * S);
  for (var a = 0; a < k; a++) for (var b = 0; b < k; b++) {
    var rr = r - h + a, cc = c - h + b; if (rr < 0 || cc < 0 || rr >= H || cc >= W) continue;
    var m = 0; for (var g = 0; g < v.groups; g++) m += Math.abs(weight(v, g, a * k + b, r, c)) / v.groups;
    ctx.fillStyle = "rgba(255,40,40," + (0.6 * m).toFixed(3) + ")"; ctx.fillRect(cc * S, rr * S, S, S);
  }
  ctx.strokeStyle = "#ff2828"; ctx.lineWidth = 2; ctx.strokeRect((c - h) * S, (r - h) * S, k * S, k * S);
  ctx.strokeStyle = "#ffffff"; ctx.lineWidth = 1; ctx.strokeRect(c * S, r * S, S, S);
  grid(root.querySelector(".sx-patch"), k, Math.max(12, Math.floor(120 / k)), function (a, b) {
    var q = 3 * (reflect(r - h + a, H) * W + reflect(c - h + b, W));
    return "rgb(" + img[q] + "," + img[q + 1] + "," + img[q + 2] + ")";
  });
  var groups = root.querySelector(".sx-groups"); groups.innerHTML = "";
  var shown = [state.variant]; if (D.reference >= 0 && D.reference !== state.variant) shown.push(D.reference);
  shown.forEach(function (vi) {
    var u = D.variants[vi];
    for (var g = 0; g < u.groups; g++) (function (g) {
      panel(groups, u.name + (u.signed ? ": alpha (blue < 0 < red), group " : ": alpha, group ") + g, u.k, function (a, b) {
        var t = weight(u, g, a * u.k + b, r, c); return u.signed ? colour((t + 1) / 2, SIGNED) : colour(t);
      });
    })(g);
  });
  var first = []; for (var j = 0; j < k * k; j++) first.push(weight(v, 0, j, r, c).toFixed(3));
  root.dataset.pixel = r + "," + c; root.dataset.variant = v.name; root.dataset.footprint = first.join(",");
  root.querySelector(".sx-readout").textContent = "pixel (row " + r + ", column " + c + ") of " + v.name;
  root.querySelectorAll(".sx-k").forEach(function (e) { e.textContent = k; });
}
function pick(ev) {
  var box = canvas.getBoundingClientRect();
  var col = Math.floor((ev.clientX - box.left) / box.width * W), row = Math.floor((ev.clientY - box.top) / box.height * H);
  if (row < 0 || col < 0 || row >= H || col >= W) return;
  if (row !== state.row || col !== state.col) { state.row = row; state.col = col; draw(); }
}
// Mouse, finger and pen alike (pointer events; CSS touch-action: none keeps a drag on the image
// from scrolling the page), and the arrow keys when the image has the keyboard focus.
canvas.addEventListener("pointermove", pick); canvas.addEventListener("pointerdown", pick);
canvas.addEventListener("click", pick);
var STEPS = {ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1]};
canvas.addEventListener("keydown", function (ev) {
  var step = STEPS[ev.key]; if (!step) return;
  ev.preventDefault();
  state.row = Math.min(Math.max(state.row + step[0], 0), H - 1);
  state.col = Math.min(Math.max(state.col + step[1], 0), W - 1);
  draw();
});
draw();
"""
