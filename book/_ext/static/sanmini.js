/* The SAN book's own page behaviour, added to every page by the sanmini_book extension (no script
   from elsewhere). tests/test_browser.py checks each part at a laptop's and a phone's width.

   1. Navigation. pydata-sphinx-theme 0.17 and sphinx-book-theme 1.3 each put a "Toggle primary
      sidebar" button on the page, and both themes wire only the first one in the document (a
      `querySelector`), which is hidden; the one a reader sees does nothing (upstream:
      pydata/pydata-sphinx-theme#2451, executablebooks/sphinx-book-theme#988). Likewise for the
      page contents' button. A click on any other copy is handed to the wired one, which opens the
      drawer on a phone and (sphinx-book-theme's own handler) folds the sidebar away on a laptop.
   2. Scroll cues. Whatever is wider than its box (a long equation, a line of code) scrolls inside
      it; such a box gets the class `sx-scrolls`, which draws a shadow on the side that has more. A
      display equation a little too wide is first set smaller, down to 70%, until it fits.
   3. Tables on a phone. A table wider than the column is laid out as one card per row, each cell
      labelled with its column's heading, so that every column (the verdict too) is on screen.
   4. Explorers. While a finger is on an explorer, the floating "Back to top" button is hidden, so
      that it never covers the weights the finger changes.
   5. Search. The snippets under the search results are the article's own text, with equations
      written in symbols instead of LaTeX source. */
(function () {
  "use strict";

  // --- 1. navigation ------------------------------------------------------------------------------
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest(".primary-toggle, .secondary-toggle");
    if (!button) return;
    var kind = button.classList.contains("primary-toggle") ? ".primary-toggle" : ".secondary-toggle";
    var wired = document.querySelector(kind);
    if (!wired || wired === button) return;
    event.preventDefault();
    event.stopPropagation();
    wired.click();
  }, true);

  // --- 2. scroll cues -----------------------------------------------------------------------------
  // Every box of the article whose style lets it scroll sideways (the style sheet gives it to
  // equations, code, outputs and tables), and none of the widgets', which lay themselves out.
  function markScrollers() {
    document.querySelectorAll("article div, article pre, article table").forEach(function (box) {
      if (box.closest(".sanmini-explorer, .sanmini-footprint")) return;
      var style = getComputedStyle(box).overflowX;
      if (style !== "auto" && style !== "scroll") return;
      var more = box.scrollWidth - box.clientWidth;
      box.classList.toggle("sx-scrolls", more > 1);
      box.classList.toggle("sx-more-right", more > 1 && box.scrollLeft < more - 1);
      box.classList.toggle("sx-more-left", more > 1 && box.scrollLeft > 1);
    });
  }

  document.addEventListener("scroll", function (event) {
    var box = event.target;
    if (box && box.classList && box.classList.contains("sx-scrolls")) {
      var more = box.scrollWidth - box.clientWidth;
      box.classList.toggle("sx-more-right", box.scrollLeft < more - 1);
      box.classList.toggle("sx-more-left", box.scrollLeft > 1);
    }
  }, true);

  // --- 3. tables on a phone -----------------------------------------------------------------------
  var PHONE = window.matchMedia("(max-width: 600px)");

  function labelCells(table) {
    var head = table.querySelector("thead tr") || table.querySelector("tr");
    if (!head) return;
    var names = Array.prototype.map.call(head.children, function (cell) { return cell.textContent.trim(); });
    table.querySelectorAll("tbody tr").forEach(function (row) {
      Array.prototype.forEach.call(row.children, function (cell, k) {
        if (names[k] && !cell.hasAttribute("data-label")) cell.setAttribute("data-label", names[k]);
      });
    });
  }

  function stackTables() {
    document.querySelectorAll("article table").forEach(function (table) {
      if (table.closest(".sanmini-explorer, .sanmini-footprint, .sanmini-chooser")) return;
      table.classList.remove("sx-stacked");
      if (PHONE.matches && table.querySelector("thead") && table.scrollWidth > table.clientWidth + 1) {
        labelCells(table);
        table.classList.add("sx-stacked");
      }
    });
  }

  // --- 2b. wide equations ---------------------------------------------------------------------------
  // A display equation a little wider than the column is set smaller until it fits, down to 70% of
  // its size (MathJax's output is in em units); a wider one keeps that size and scrolls, with the cue.
  function fitEquations() {
    document.querySelectorAll("div.math mjx-container[display='true']").forEach(function (eq) {
      eq.style.removeProperty("font-size");
      var box = eq.closest("div.math"), room = box.clientWidth - 4, width = eq.scrollWidth;
      if (width > room) {
        var size = parseFloat(getComputedStyle(eq).fontSize), shrink = Math.max(0.7, room / width);
        eq.style.setProperty("font-size", (size * shrink).toFixed(2) + "px", "important");
      }
    });
  }

  // --- 4. explorers -------------------------------------------------------------------------------
  function quietBackToTop() {
    var timer = null;
    document.querySelectorAll(".sanmini-explorer").forEach(function (explorer) {
      explorer.addEventListener("touchstart", function () {
        clearTimeout(timer);
        document.body.classList.add("sx-exploring");
      }, {passive: true});
      explorer.addEventListener("touchend", function () {
        timer = setTimeout(function () { document.body.classList.remove("sx-exploring"); }, 1500);
      }, {passive: true});
    });
  }

  // --- 5. search results ------------------------------------------------------------------------
  // Sphinx's search shows a snippet of each page's text: by default of the whole main block, page
  // buttons and previous/next links included, and of equations as their LaTeX source. Here it is the
  // article's text alone, widgets and outputs left out, with the most common symbols written out.
  var SYMBOLS = {alpha: "\u03b1", beta: "\u03b2", gamma: "\u03b3", delta: "\u03b4", varphi: "\u03c6",
                 phi: "\u03c6", psi: "\u03c8", odot: "\u2299", sum: "\u03a3", times: "\u00d7", cdot: "\u00b7",
                 in: "\u2208", le: "\u2264", ge: "\u2265", leq: "\u2264", geq: "\u2265", to: "\u2192",
                 rightarrow: "\u2192", infty: "\u221e", partial: "\u2202", sigma: "\u03c3", mu: "\u03bc",
                 epsilon: "\u03b5", lambda: "\u03bb", theta: "\u03b8", approx: "\u2248", neq: "\u2260"};

  function plainMath(tex) {
    return tex.replace(/\\[()\[\]]/g, "")
      .replace(/\\([A-Za-z]+)/g, function (all, name) { return SYMBOLS[name] || (name.length > 1 ? "" : name); })
      .replace(/[{}]/g, "").replace(/\s+/g, " ").trim();
  }

  function articleText(htmlString, anchor) {
    var doc = new DOMParser().parseFromString(htmlString, "text/html");
    doc.querySelectorAll(".headerlink, script, style, .bd-header-article, .prev-next-area, .bd-footer-article, " +
                         ".cell_output, .sanmini-explorer, .sanmini-footprint, .sanmini-chooser, .toggle-details, " +
                         "button, .tag_remove-cell").forEach(function (e) { e.remove(); });
    doc.querySelectorAll(".math").forEach(function (e) { e.textContent = " " + plainMath(e.textContent) + " "; });
    var main = doc.querySelector("article.bd-article") || doc.querySelector('[role="main"]');
    var part = main && anchor ? main.querySelector(anchor) || main : main;
    return part ? part.textContent.replace(/\s+/g, " ").trim() : "";
  }

  if (typeof Search !== "undefined" && Search.htmlToText) Search.htmlToText = articleText;  // eslint-disable-line no-undef

  function layout() {
    fitEquations();
    stackTables();
    markScrollers();
  }

  function start() {
    layout();
    quietBackToTop();
    window.addEventListener("resize", layout);
    window.addEventListener("load", layout);          // images and fonts change the widths
    // MathJax typesets after the load event and widens the equations.
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) MathJax.startup.promise.then(layout);
    if (document.fonts && document.fonts.ready) document.fonts.ready.then(layout);   // web fonts widen code
    setTimeout(layout, 1500);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();

  window.sanminiLayout = layout;                       // for the browser tests, after they change the page
})();
