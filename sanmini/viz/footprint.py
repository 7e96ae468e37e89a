"""The footprint playground: choose K, stride, padding and dilation, and see the footprint R(i) of
any output pixel drawn on an image, with the output size (Zhao et al., CVPR 2020, Sec. 3: the
footprint every aggregation of the book reads; the window rule of ``sanmini.ops.geometry``).

For output pixel (ho, wo) the footprint is the K x K positions

    (ho * s - p + ki * d,  wo * s - p + kj * d),   ki, kj = 0 .. K - 1,

and the output has ``floor((H + 2p - d (K - 1) - 1) / s) + 1`` rows (the same for columns). A
position outside the image reads 0 with zero padding, or the pixel mirrored at the border with
reflection padding (which needs p < H and p < W).

:class:`FootprintPlayground` shows it two ways, as the attention explorer does: self-contained
HTML whose own JavaScript redraws on every change (no kernel, no script from elsewhere), and live
ipywidgets in a running kernel.
"""
from __future__ import annotations

import hashlib
import html
import json

from ..nn.checks import check_int
from ..ops.geometry import output_size
from .explorer import _as_image, _b64, _check_scale, _warn_if_large, embedded_bytes
from .page import PageWidget

SIZES = {"K": (1, 3, 5, 7, 9), "stride": (1, 2, 3, 4), "dilation": (1, 2, 3), "padding": tuple(range(9))}
PAD_MODES = ("zeros", "reflect")


def reflect(index: int, size: int) -> int:
    """The pixel that reflection padding reads at ``index`` of an axis of ``size`` pixels
    (mirrored at the border pixel, which is not repeated: -1 -> 1, size -> size - 2)."""
    if size == 1:
        return 0
    period = 2 * (size - 1)
    index = abs(index) % period
    return period - index if index >= size else index


class FootprintPlayground(PageWidget):
    """An image and the footprint of an output pixel under a chosen K, stride, padding, dilation.

    Args:
        image: (3, H, W) or (H, W, 3) (or one channel), floats in [0, 1] or integers in [0, 255].
        scale: screen pixels per image pixel, an int from 1 to 64.
        caption: text under the page's playground.

    Refused with a ValueError (TypeError for a non-int) naming the argument: an image it would
    misread, a bad ``scale``; in :meth:`output_shape` and :meth:`footprint`, K, stride or dilation
    below 1, padding below 0, and in :meth:`footprint` an output pixel outside the output.
    A page that embeds more than 8 MB of image warns with its size.
    """

    def __init__(self, image, scale: int = 3, caption: str = ""):
        self.image = _as_image(image)
        _check_scale(scale)
        if not isinstance(caption, str):
            raise ValueError(f"caption must be a str, got {type(caption).__name__}")
        self.scale, self.caption = int(scale), caption
        _warn_if_large(type(self).__name__, embedded_bytes(self.image))

    def output_shape(self, K: int, stride: int, padding: int, dilation: int) -> tuple[int, int]:
        """(Ho, Wo) of the aggregation (``sanmini.ops.output_size``); either may be < 1, where
        the footprint does not fit in the padded image."""
        for name, value, minimum in (("K", K, 1), ("stride", stride, 1), ("padding", padding, 0),
                                     ("dilation", dilation, 1)):
            check_int(name, value, minimum)
        height, width = self.image.shape[:2]
        return tuple(output_size(n, K, stride, padding, dilation) for n in (height, width))

    def footprint(self, ho: int, wo: int, K: int, stride: int, padding: int, dilation: int,
                  pad_mode: str = "zeros") -> list[tuple[int, int, tuple | None]]:
        """The K*K positions (row, col) of output pixel (ho, wo), row by row, each with the pixel it
        reads: itself inside the image, None outside with zero padding, the mirrored pixel with
        reflection padding."""
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        out_height, out_width = self.output_shape(K, stride, padding, dilation)
        height, width = self.image.shape[:2]
        if pad_mode == "reflect" and padding >= min(height, width):
            raise ValueError(f"reflection padding needs padding < the image's height and width "
                             f"({height} x {width}), got {padding}")
        if out_height < 1 or out_width < 1:
            raise ValueError(f"the footprint does not fit: K={K}, stride={stride}, padding={padding}, "
                             f"dilation={dilation} on {height} x {width} gives an output of "
                             f"{out_height} x {out_width}")
        for name, value, size in (("ho", ho, out_height), ("wo", wo, out_width)):
            check_int(name, value, 0)
            if value >= size:
                raise ValueError(f"{name} must be an output pixel, 0 to {size - 1} (the output is "
                                 f"{out_height} x {out_width}), got {value}")
        taps = []
        for ki in range(K):
            for kj in range(K):
                r, c = ho * stride - padding + ki * dilation, wo * stride - padding + kj * dilation
                inside = 0 <= r < height and 0 <= c < width
                reads = (r, c) if inside else (None if pad_mode == "zeros" else (reflect(r, height), reflect(c, width)))
                taps.append((r, c, reads))
        return taps

    # --- the page: HTML + JavaScript, no kernel -----------------------------------------------

    def to_html(self) -> str:
        height, width = self.image.shape[:2]
        data = json.dumps({"height": height, "width": width, "scale": self.scale, "image": _b64(self.image),
                           "margin": max(SIZES["padding"])}, separators=(",", ":"))
        uid = "fp-" + hashlib.sha1(data.encode()).hexdigest()[:10]
        controls = "".join(
            f'<label>{name} <select class="fp-{name.lower()}">'
            + "".join(f'<option{" selected" if v == default else ""}>{v}</option>' for v in values)
            + "</select></label> "
            for (name, values), default in zip(SIZES.items(), (3, 1, 1, 1)))
        controls += ('<label>padding mode <select class="fp-mode">'
                     + "".join(f"<option>{m}</option>" for m in PAD_MODES) + "</select></label>")
        caption = f'<p class="fp-caption">{html.escape(self.caption)}</p>' if self.caption else ""
        label = (f"Image of {width} by {height} pixels, drawn with a margin for the padding; the footprint of "
                 f"the chosen output pixel is drawn on it. Arrow keys move the output pixel.")
        return (_TEMPLATE.replace("__ID__", uid).replace("__CONTROLS__", controls).replace("__LABEL__", label)
                .replace("__CAPTION__", caption).replace("__DATA__", data).replace("__SCRIPT__", _SCRIPT))


    # --- a running kernel: ipywidgets ----------------------------------------------------------

    def widget(self):
        """Live controls (K, stride, padding, dilation, mode, output pixel) and a matplotlib view."""
        import ipywidgets as widgets
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle

        height, width = self.image.shape[:2]
        choose = {name: widgets.Dropdown(options=values, value=default, description=name)
                  for (name, values), default in zip(SIZES.items(), (3, 1, 1, 1))}
        mode = widgets.Dropdown(options=PAD_MODES, description="mode")
        row = widgets.IntSlider(value=0, min=0, max=height - 1, description="output row")
        col = widgets.IntSlider(value=0, min=0, max=width - 1, description="output col")
        out = widgets.Output()

        def draw(*_):
            K, s, p, d = (choose[n].value for n in ("K", "stride", "padding", "dilation"))
            with out:
                out.clear_output(wait=True)
                if mode.value == "reflect" and p >= min(height, width):
                    print("reflection padding needs padding < the image's height and width")
                    return
                ho_max, wo_max = self.output_shape(K, s, p, d)
                if ho_max < 1 or wo_max < 1:
                    print(f"the footprint does not fit: output {ho_max} x {wo_max}")
                    return
                ho, wo = min(row.value, ho_max - 1), min(col.value, wo_max - 1)
                fig, ax = plt.subplots(figsize=(4, 4))
                ax.imshow(self.image)
                for r, c, reads in self.footprint(ho, wo, K, s, p, d, mode.value):
                    colour = "lime" if reads == (r, c) else ("red" if reads is None else "orange")
                    ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, color=colour))
                    if reads not in (None, (r, c)):
                        ax.plot([c, reads[1]], [r, reads[0]], color="orange", lw=0.6)
                margin = max(SIZES["padding"])
                ax.set_xlim(-margin - 0.5, width + margin - 0.5)
                ax.set_ylim(height + margin - 0.5, -margin - 0.5)
                ax.set_title(f"output {ho_max} x {wo_max}; pixel ({ho}, {wo})", fontsize=10)
                plt.show()

        for control in (*choose.values(), mode, row, col):
            control.observe(draw, names="value")
        draw()
        return widgets.VBox([widgets.HBox(list(choose.values())[:2]), widgets.HBox(list(choose.values())[2:]),
                             mode, widgets.HBox([row, col]), out])



_TEMPLATE = """<div class="sanmini-footprint" id="__ID__" data-output="" data-pixel="" data-taps="">
<style>
#__ID__ {font-family: sans-serif; font-size: 13px; margin: 0.5em 0 1em 0;}
#__ID__ label {margin-right: 8px; white-space: nowrap;}
#__ID__ .fp-readout {display: block; margin: 4px 0; color: #333;}
#__ID__ canvas {image-rendering: pixelated; border: 1px solid #ccc; cursor: crosshair; touch-action: none;
  max-width: 100%; height: auto;}
#__ID__ canvas:focus-visible {outline: 3px solid #1a73e8; outline-offset: 2px;}
#__ID__ .fp-caption {font-size: 12px; color: #555; margin: 4px 0 0 0;}
</style>
<div class="fp-controls">__CONTROLS__</div>
<span class="fp-readout" aria-live="polite"></span>
<canvas tabindex="0" role="application" aria-roledescription="footprint playground" aria-label="__LABEL__"></canvas>
__CAPTION__
<script type="application/json" class="fp-data">__DATA__</script>
<script>(function(){var root=document.getElementById("__ID__");__SCRIPT__})();</script>
</div>"""

# The page's own JavaScript: the window rule of sanmini.ops.geometry, drawn.
_SCRIPT = r"""
var D = JSON.parse(root.querySelector(".fp-data").textContent);
var H = D.height, W = D.width, S = D.scale, M = D.margin;
var b = atob(D.image), img = new Uint8Array(b.length);
for (var i = 0; i < b.length; i++) img[i] = b.charCodeAt(i);
var base = document.createElement("canvas"); base.width = W; base.height = H;
var bctx = base.getContext("2d"), pix = bctx.createImageData(W, H);
for (var p = 0; p < W * H; p++) { for (var c = 0; c < 3; c++) pix.data[4 * p + c] = img[3 * p + c]; pix.data[4 * p + 3] = 255; }
bctx.putImageData(pix, 0, 0);
var canvas = root.querySelector("canvas"), ctx = canvas.getContext("2d");
canvas.width = (W + 2 * M) * S; canvas.height = (H + 2 * M) * S;
var readout = root.querySelector(".fp-readout");
function value(name) { return root.querySelector(".fp-" + name).value; }
function reflect(i, n) { if (n === 1) return 0; var per = 2 * (n - 1); i = Math.abs(i) % per; return i >= n ? per - i : i; }
function outSize(n, K, s, p, d) { return Math.floor((n + 2 * p - d * (K - 1) - 1) / s) + 1; }
var ho = 0, wo = 0;
function settings() { return {K: +value("k"), s: +value("stride"), p: +value("padding"), d: +value("dilation"), mode: value("mode")}; }
function draw() {
  var g = settings();
  ctx.fillStyle = "#f4f4f4"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(base, M * S, M * S, W * S, H * S);
  ctx.strokeStyle = "#999"; ctx.lineWidth = 1; ctx.strokeRect(M * S - 0.5, M * S - 0.5, W * S + 1, H * S + 1);
  if (g.mode === "reflect" && g.p >= Math.min(H, W)) {
    readout.textContent = "reflection padding needs padding < the image's height and width";
    root.setAttribute("data-output", "invalid"); return;
  }
  var Ho = outSize(H, g.K, g.s, g.p, g.d), Wo = outSize(W, g.K, g.s, g.p, g.d);
  root.setAttribute("data-output", Ho + "x" + Wo);
  if (Ho < 1 || Wo < 1) { readout.textContent = "output " + Ho + " x " + Wo + ": the footprint does not fit"; return; }
  ho = Math.min(Math.max(ho, 0), Ho - 1); wo = Math.min(Math.max(wo, 0), Wo - 1);
  var outside = 0, taps = [];
  for (var ki = 0; ki < g.K; ki++) for (var kj = 0; kj < g.K; kj++) {
    var r = ho * g.s - g.p + ki * g.d, c = wo * g.s - g.p + kj * g.d;
    var inside = r >= 0 && r < H && c >= 0 && c < W;
    taps.push(r + "," + c);
    if (!inside) outside++;
    var colour = inside ? "0,200,83" : (g.mode === "zeros" ? "229,57,53" : "251,140,0");
    ctx.fillStyle = "rgba(" + colour + ",0.6)"; ctx.fillRect((c + M) * S, (r + M) * S, S, S);
    ctx.strokeStyle = "rgb(" + colour + ")"; ctx.lineWidth = 1;
    ctx.strokeRect((c + M) * S + 0.5, (r + M) * S + 0.5, S - 1, S - 1);
    if (!inside && g.mode === "reflect") {
      var rr = reflect(r, H), cc = reflect(c, W);
      ctx.lineWidth = 1; ctx.beginPath(); ctx.moveTo((c + M + 0.5) * S, (r + M + 0.5) * S);
      ctx.lineTo((cc + M + 0.5) * S, (rr + M + 0.5) * S); ctx.stroke();
    }
  }
  var top = ho * g.s - g.p, left = wo * g.s - g.p, side = (g.K - 1) * g.d + 1;   // the footprint's extent
  ctx.setLineDash([4, 3]); ctx.strokeStyle = "#fff"; ctx.lineWidth = 1;
  ctx.strokeRect((left + M) * S - 0.5, (top + M) * S - 0.5, side * S + 1, side * S + 1); ctx.setLineDash([]);
  root.setAttribute("data-pixel", ho + "," + wo); root.setAttribute("data-taps", taps.join(" "));
  readout.textContent = "output " + Ho + " x " + Wo + "; output pixel (" + ho + ", " + wo + "): " +
    (g.K * g.K - outside) + " of " + g.K * g.K + " positions inside the image" +
    (outside ? (g.mode === "zeros" ? ", " + outside + " read 0" : ", " + outside + " read a mirrored pixel") : "");
}
function pick(ev) {
  var rect = canvas.getBoundingClientRect(), g = settings();
  var x = (ev.clientX - rect.left) * canvas.width / rect.width / S - M, y = (ev.clientY - rect.top) * canvas.height / rect.height / S - M;
  var centre = (g.K - 1) * g.d / 2;                       // the output pixel whose footprint centre is nearest
  ho = Math.round((y - 0.5 + g.p - centre) / g.s); wo = Math.round((x - 0.5 + g.p - centre) / g.s);
  draw();
}
canvas.addEventListener("pointermove", pick);
canvas.addEventListener("pointerdown", function (ev) { canvas.focus(); pick(ev); });
canvas.addEventListener("keydown", function (ev) {
  var step = {ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1]}[ev.key];
  if (!step) return;
  ev.preventDefault(); ho += step[0]; wo += step[1]; draw();
});
root.querySelectorAll("select").forEach(function (s) { s.addEventListener("change", draw); });
draw();
"""
