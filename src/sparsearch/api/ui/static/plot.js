/*
 * plot.js: dependency-free SVG charts for the sparsearch dashboard (plain ES2020, offline).
 *
 *   SparsePlot.scatter(el, opts) -> {update(points), highlight(id), destroy()}
 *   SparsePlot.line(el, opts)    -> {update(points), destroy()}
 *   SparsePlot.formatBytes(n)    -> "812 B" | "23.4 KiB" | "1.20 MiB"  (like units.format_size)
 *   SparsePlot.formatPercent(v)  -> "91.2 %"
 *
 * Each plotted point is one SVG shape with class "pt pt-<kind>" and data-id/data-x/data-y
 * (raw values, "" for null) plus a <title>, so tests can read the chart from the DOM. Charts
 * redraw when their container is resized; hover/focus tips use one delegated listener set
 * per chart, so update() only swaps SVG nodes.
 */
(() => {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  // viridis from 0 to 0.9: the palest tenth has too little contrast on white
  const STOPS = ["#440154", "#46327e", "#365c8d", "#277f8e", "#1fa187", "#4ac16d", "#a0da39"];
  const GREY = "#6b7280", DARK = "#374151", LIMIT = "#b42318", LINE = "#31688e", NOCOLOR = "#64748b";
  const KINDS = [["front", "front"], ["feasible", "dominated"], ["over", "over limit"],
    ["infeasible", "infeasible"], ["failed", "failed"]];
  const DASH = { stroke: LIMIT, "stroke-width": 1.5, "stroke-dasharray": "5 4" };
  const RANK = { feasible: 0, over: 1, infeasible: 2, failed: 3, front: 4 };
  const CSS = `
.sp-svg{display:block;width:100%;height:auto;overflow:visible;font-size:11px;user-select:none}
.sp-svg text{fill:currentColor}
.sp-svg .pt{cursor:pointer}
.sp-svg a{outline:none}
.sp-svg .pt:focus-visible,.sp-svg a:focus-visible .pt{outline:none;stroke:#d97706;stroke-width:3px}
.sp-svg .pt-highlight{fill:none;stroke:#e11d48;stroke-width:2.5px;pointer-events:none}
.sp-svg .sp-empty{font-size:13px;opacity:.7}
.plot-tip{position:absolute;z-index:10;pointer-events:none;max-width:280px;padding:6px 8px;
  border-radius:4px;background:rgba(17,24,39,.95);color:#fff;font-size:12px;line-height:1.35;
  white-space:pre-line;box-shadow:0 2px 8px rgba(0,0,0,.25)}
.plot-tip[hidden]{display:none}`;
  let uid = 0;

  // ---- small helpers -----------------------------------------------------------------------
  const num = (v) => typeof v === "number" && Number.isFinite(v);
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  const textW = (s, size = 11) => String(s).length * size * 0.58; // estimate, no layout pass
  const raw = (v) => (v == null ? "" : String(v));
  const firstLine = (s) => String(s).split("\n")[0];
  const measure = (t) => t.getComputedTextLength() || textW(t.textContent); // 0 while hidden

  function el(tag, attrs, parent) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v != null) e.setAttribute(k, v);
    if (parent) parent.appendChild(e);
    return e;
  }
  function text(parent, x, y, str, attrs) {
    const t = el("text", { x, y, ...attrs }, parent);
    t.textContent = str;
    return t;
  }
  function injectStyle() {
    if (document.getElementById("sparseplot-style")) return;
    const s = document.createElement("style");
    s.id = "sparseplot-style";
    s.textContent = CSS;
    document.head.appendChild(s);
  }

  // ---- formatting --------------------------------------------------------------------------
  // Python's format rounds an exact tie to even (4.25 -> "4.2"), toFixed away from zero: the
  // same size must read the same in the server's and the script's tables.
  function fixed(v, digits) {
    const scaled = v * 10 ** digits, low = Math.floor(scaled);
    const even = scaled - low === 0.5 && low % 2 === 0;
    return (even ? low / 10 ** digits : v).toFixed(digits);
  }
  function formatBytes(n) {
    if (!num(n)) return "-";
    if (Math.abs(n) < 1024) return `${Math.round(n)} B`;
    if (Math.abs(n) < 1024 ** 2) return `${fixed(n / 1024, 1)} KiB`;
    return `${fixed(n / 1024 ** 2, 2)} MiB`;
  }
  const formatPercent = (v) => (num(v) ? `${(v * 100).toFixed(1)} %` : "-");

  // ---- scales ------------------------------------------------------------------------------
  // 1/2/5 x 10^k steps; `unit` (e.g. 1024 for bytes) makes them 1/2/5 x 10^k x unit.
  function niceStep(span, n, unit = 1) {
    const r = span / unit / Math.max(1, n);
    const mag = 10 ** Math.floor(Math.log10(r));
    const f = r / mag;
    return unit * mag * (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10);
  }
  function ticks(lo, hi, step) {
    const out = [];
    for (let i = Math.ceil(lo / step - 1e-9); i * step <= hi + step * 1e-9; i++) {
      out.push(+(i * step).toPrecision(12));
    }
    return out;
  }
  // Tick labels of the built-in formats drop trailing zeros: "50.0 KiB" -> "50 KiB".
  function tickFormat(fmt) {
    if (fmt !== formatBytes && fmt !== formatPercent) return fmt;
    return (v) => fmt(v).replace(/(\.\d*?)0+ /, "$1 ").replace(". ", " ");
  }
  function unitFor(fmt, span) {
    if (fmt !== formatBytes) return 1;
    return span >= 2 * 1024 ** 2 ? 1024 ** 2 : span >= 2048 ? 1024 : 1;
  }
  // A value domain: lo floored to a nice tick (with a little room), hi fixed or padded.
  function valueDomain(vals, fixedLo, fixedHi) {
    let lo = num(fixedLo) ? fixedLo : vals.length ? Math.min(...vals) : 0;
    let hi = num(fixedHi) ? fixedHi : vals.length ? Math.max(...vals) : 1;
    if (!num(fixedHi)) hi += (hi - lo) * 0.06 || Math.abs(hi) * 0.1 || 1;
    if (!(hi > lo)) lo = hi - 1;
    if (!num(fixedLo)) {
      const step = niceStep(hi - lo, 5);
      lo = Math.floor((lo - (hi - lo) * 0.02) / step) * step;
    }
    return [lo, hi];
  }
  function colorAt(t) {
    const s = clamp(t, 0, 1) * (STOPS.length - 1), i = Math.min(Math.floor(s), STOPS.length - 2);
    const a = hex(STOPS[i]), b = hex(STOPS[i + 1]), f = s - i;
    return `rgb(${a.map((v, k) => Math.round(v + (b[k] - v) * f)).join(",")})`;
  }
  const hex = (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));

  // ---- axes: grid, ticks, titles; returns the plot box and scales ---------------------------
  function axes(svg, W, H, top, x, y, strip) {
    const stripH = strip ? 28 : 0, plotH = H - top - stripH - 46;
    const ny = clamp(Math.round(plotH / 50), 3, 6);
    const yt = ticks(y.lo, y.hi, niceStep(y.hi - y.lo, ny, unitFor(y.fmt, y.hi - y.lo)));
    const yl = yt.map(tickFormat(y.fmt));
    const left = Math.ceil(30 + Math.max(16, ...yl.map((s) => textW(s)), strip ? textW("no accuracy", 10) : 0));
    const span = x.hi - x.lo, unit = unitFor(x.fmt, span);
    let plotW = W - left - 16, nx = clamp(Math.round(plotW / 60), 2, 6), xt, xl;
    for (;;) { // fewer x ticks until their labels do not touch
      xt = ticks(x.lo, x.hi, x.integer ? Math.max(1, niceStep(span, nx, unit)) : niceStep(span, nx, unit));
      xl = xt.map(tickFormat(x.fmt));
      const gap = xt.length > 1 ? ((xt[1] - xt[0]) / span) * plotW : plotW;
      if (nx <= 2 || Math.max(...xl.map((s) => textW(s))) + 12 < gap) break;
      nx--;
    }
    const overhang = textW(xl[xl.length - 1]) / 2 - ((x.hi - xt[xt.length - 1]) / span) * plotW;
    plotW = W - left - Math.max(16, Math.ceil(overhang) + 4);
    const sx = (v) => left + ((v - x.lo) / span) * plotW;
    const sy = (v) => top + plotH - ((clamp(v, y.lo, y.hi) - y.lo) / (y.hi - y.lo)) * plotH;
    const base = top + plotH, g = el("g", { class: "sp-axes" }, svg);
    const grid = { stroke: "currentColor", "stroke-opacity": 0.12, "shape-rendering": "crispEdges" };
    yt.forEach((v, i) => {
      el("line", { x1: left, x2: left + plotW, y1: sy(v), y2: sy(v), ...grid }, g);
      text(g, left - 6, sy(v), yl[i], { "text-anchor": "end", dy: "0.32em" });
    });
    xt.forEach((v, i) => {
      el("line", { x1: sx(v), x2: sx(v), y1: top, y2: base + stripH, ...grid }, g);
      text(g, sx(v), base + stripH + 16, xl[i], { "text-anchor": "middle" });
    });
    if (strip) {
      el("rect", { x: left, y: base + 6, width: plotW, height: 20, fill: "currentColor", "fill-opacity": 0.05 },
        g);
      text(g, left - 6, base + 16, "no accuracy",
        { "text-anchor": "end", dy: "0.32em", "font-size": 10, "font-style": "italic" });
    }
    const axis = { stroke: "currentColor", "stroke-opacity": 0.55, "shape-rendering": "crispEdges" };
    el("line", { x1: left, x2: left + plotW, y1: base, y2: base, ...axis }, g);
    el("line", { x1: left, x2: left, y1: top, y2: base, ...axis }, g);
    text(g, left + plotW / 2, H - 8, x.label || "", { "text-anchor": "middle", "font-size": 12 });
    const cy = top + plotH / 2;
    text(g, 13, cy, y.label || "",
      { "text-anchor": "middle", "font-size": 12, transform: `rotate(-90 13 ${cy})`, dy: "0.32em" });
    return { sx, sy, left, top, plotW, plotH, base, stripY: base + 16, bottom: base + stripH };
  }

  function empty(svg, W, H) {
    text(svg, W / 2, H / 2, "no data yet", { class: "sp-empty", "text-anchor": "middle", dy: "0.32em" });
  }

  // One shape per marker kind (legend swatches reuse it). The x is a filled polygon, so it
  // has a real hit area; a transparent stroke widens the small ones for the mouse.
  function shape(kind, px, py, fill) {
    switch (kind) {
      case "front":
        return el("circle", { cx: px, cy: py, r: 6, fill, stroke: "rgba(0,0,0,.55)", "stroke-width": 1 });
      case "feasible":
        return el("circle",
          { cx: px, cy: py, r: 4, fill, "fill-opacity": 0.45, stroke: fill, "stroke-opacity": 0.7 });
      case "over":
        return el("circle", { cx: px, cy: py, r: 4.5, fill: "none", stroke: DARK, "stroke-width": 1.5,
          "pointer-events": "all" });
      case "infeasible": {
        const s = 5.5;
        const d = `M${px},${py - s}L${px + s},${py}L${px},${py + s}L${px - s},${py}Z`;
        return el("path", { d, fill: "#9ca3af", stroke: "#4b5563" });
      }
      default: { // failed: a rotated plus, as one closed polygon
        const s = 5.5, w = 1.3, q = Math.SQRT1_2;
        const pts = [[-w, -s], [w, -s], [w, -w], [s, -w], [s, w], [w, w],
          [w, s], [-w, s], [-w, w], [-s, w], [-s, -w], [-w, -w]];
        const d = pts.map(([a, b], i) =>
          `${i ? "L" : "M"}${(px + (a - b) * q).toFixed(2)},${(py + (a + b) * q).toFixed(2)}`);
        return el("path", { d: d.join("") + "Z", fill: GREY, stroke: "rgba(0,0,0,0)", "stroke-width": 4 });
      }
    }
  }

  // Attach one marker: data attributes and <title> on the shape; focus on the <a> if linked.
  function addMarker(g, node, p, kind, titleText) {
    node.setAttribute("class", `pt pt-${kind}`);
    if (p.id != null) node.setAttribute("data-id", raw(p.id));
    node.setAttribute("data-x", raw(p.x));
    node.setAttribute("data-y", raw(p.y));
    el("title", {}, node).textContent = titleText;
    const label = firstLine(titleText);
    if (p.href) {
      const a = el("a", { href: p.href, tabindex: 0, "aria-label": label }, g);
      a.appendChild(node);
      return a;
    }
    node.setAttribute("tabindex", "0");
    node.setAttribute("role", "img");
    node.setAttribute("aria-label", label);
    g.appendChild(node);
    return node;
  }

  // ---- chart shell: svg + tip, delegated listeners, ResizeObserver --------------------------
  function mount(container, draw) {
    if (container.__sparsePlot) container.__sparsePlot.destroy();
    injectStyle();
    container.replaceChildren();
    if (getComputedStyle(container).position === "static") container.style.position = "relative";
    const svg = el("svg", { class: "sp-svg", role: "group" }, container);
    const tip = document.createElement("div");
    tip.className = "plot-tip";
    tip.hidden = true;
    container.appendChild(tip);
    let lastW = 0, raf = 0, current = null;

    const render = () => {
      const W = Math.round(svg.getBoundingClientRect().width) || 640;
      const H = Math.round(clamp(W * 0.62, 260, 420));
      lastW = W;
      hide();
      svg.replaceChildren();
      svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
      draw(svg, W, H);
    };
    const markerOf = (t) => {
      if (!t || !t.closest || !svg.contains(t)) return null;
      return t.closest(".pt") || (t.tagName === "a" ? t.querySelector(".pt") : null);
    };
    function show(e) {
      const m = markerOf(e.target);
      if (!m) return;
      current = m;
      const t = m.querySelector("title");
      tip.textContent = t ? t.textContent : "";
      tip.hidden = false;
      const c = container.getBoundingClientRect(), r = m.getBoundingClientRect();
      const mx = r.left + r.width / 2 - c.left, tw = tip.offsetWidth, th = tip.offsetHeight;
      let left = mx + 12;
      if (left + tw > c.width) left = Math.max(0, mx - tw - 12);
      let top = r.top - c.top - th - 6;
      if (top < 0) top = r.bottom - c.top + 6;
      tip.style.left = `${left}px`;
      tip.style.top = `${top}px`;
    }
    function hide(e) {
      if (e && e.relatedTarget && markerOf(e.relatedTarget) === current) return;
      current = null;
      tip.hidden = true;
    }
    svg.addEventListener("mouseover", show);
    svg.addEventListener("focusin", show);
    svg.addEventListener("mouseout", hide);
    svg.addEventListener("focusout", hide);
    const ro = typeof ResizeObserver === "function" ? new ResizeObserver(() => {
      cancelAnimationFrame(raf);
      raf = requestAnimationFrame(() => {
        const w = Math.round(svg.getBoundingClientRect().width);
        if (w && w !== lastW) render();
      });
    }) : null;
    if (ro) ro.observe(container);
    const api = {
      render,
      destroy() {
        if (ro) ro.disconnect();
        cancelAnimationFrame(raf);
        container.replaceChildren();
        if (container.__sparsePlot === api) delete container.__sparsePlot;
      },
    };
    container.__sparsePlot = api;
    render();
    return api;
  }

  // ---- scatter -----------------------------------------------------------------------------
  function scatter(container, opts = {}) {
    const o = { xFormat: String, yFormat: String, colorFormat: String, xLimit: null, yLimit: null,
      xLimitLabel: "limit", yLimitLabel: "limit", ...opts };
    const gradId = `sp-grad-${++uid}`;
    let points = o.points || [], hl = null, index = new Map(), layers = null;

    function applyHighlight() {
      if (!layers) return;
      layers.ring.replaceChildren();
      const m = hl == null ? null : index.get(String(hl));
      if (!m) return;
      layers.pts.appendChild(m.node); // bring to front
      el("circle", { class: "pt-highlight", cx: m.px, cy: m.py, r: 10 }, layers.ring);
    }

    function draw(svg, W, H) {
      index = new Map();
      layers = null;
      const pts = points.filter((p) => p && num(p.x))
        .map((p) => ({ p, kind: RANK[p.kind] === undefined ? "feasible" : p.kind }));
      if (!pts.length) return empty(svg, W, H);
      const ys = pts.filter((d) => num(d.p.y)).map((d) => d.p.y);
      const xs = pts.map((d) => d.p.x), strip = ys.length < pts.length;
      const xLo = Math.min(0, ...xs);
      let xHi = Math.max(...xs, num(o.xLimit) ? o.xLimit : -Infinity) * 1.05;
      if (!(xHi > xLo)) xHi = xLo + 1;
      const [yLo, yHi] = valueDomain(num(o.yLimit) ? [...ys, o.yLimit] : ys, o.yMin, o.yMax);
      const cs = pts.filter((d) => (d.kind === "front" || d.kind === "feasible") && num(d.p.color))
        .map((d) => d.p.color);
      const cMin = Math.min(...cs), cMax = Math.max(...cs);
      const fill = (c) =>
        (num(c) && cs.length ? colorAt(cMax > cMin ? (c - cMin) / (cMax - cMin) : 0.5) : NOCOLOR);

      // legend rows (kinds present, then the colour bar), wrapped to the width
      const lg = el("g", { class: "sp-legend" }, svg);
      let lx = 8, row = 0;
      for (const [kind, label] of KINDS.filter(([k]) => pts.some((d) => d.kind === k))) {
        const sw = shape(kind, 0, 0, fill(kind === "over" ? null : (cMin + cMax) / 2));
        const t = text(lg, 0, 0, label, { dy: "0.32em" }), w = 14 + measure(t) + 14;
        if (lx + w > W - 8 && lx > 8) { lx = 8; row++; }
        lg.insertBefore(sw, t);
        sw.setAttribute("transform", `translate(${lx + 5} ${14 + row * 18})`);
        t.setAttribute("x", lx + 14);
        t.setAttribute("y", 14 + row * 18);
        lx += w;
      }
      if (cs.length) { // colour bar: "<title> min [gradient] max", right-aligned if it fits
        const cg = el("g", {}, lg), grad = el("linearGradient", { id: gradId }, el("defs", {}, svg));
        STOPS.forEach((c, i) =>
          el("stop", { offset: `${(i / (STOPS.length - 1)) * 100}%`, "stop-color": c }, grad));
        let cx = 0;
        const parts = [[o.colorLabel || "", true], [o.colorFormat(cMin)], [null], [o.colorFormat(cMax)]];
        for (const [str, bold] of parts) {
          if (str === null) {
            el("rect", { x: cx, y: -4, width: 64, height: 8, rx: 2, fill: `url(#${gradId})` }, cg);
            cx += 70;
          } else if (str) {
            const t = text(cg, cx, 0, str, { dy: "0.32em", "font-weight": bold ? 600 : null });
            cx += measure(t) + (bold ? 8 : 6);
          }
        }
        let x0 = W - 8 - cx;
        if (x0 < lx + 8) { row++; x0 = 8; }
        cg.setAttribute("transform", `translate(${x0} ${14 + row * 18})`);
      }
      const top = 8 + (row + 1) * 18 + (num(o.xLimit) ? 16 : 6);
      const ax = axes(svg, W, H, top, { lo: xLo, hi: xHi, fmt: o.xFormat, label: o.xLabel },
        { lo: yLo, hi: yHi, fmt: o.yFormat, label: o.yLabel }, strip);

      if (num(o.xLimit)) { // vertical limit, labelled above the plot
        const x = ax.sx(o.xLimit), label = o.xLimitLabel;
        el("line", { x1: x, x2: x, y1: ax.top, y2: ax.bottom, ...DASH }, svg);
        const tx = clamp(x, textW(label) / 2 + 2, W - textW(label) / 2 - 2);
        text(svg, tx, ax.top - 5, label, { "text-anchor": "middle", style: `fill:${LIMIT}` });
      }
      if (num(o.yLimit)) {
        const y = ax.sy(o.yLimit);
        el("line", { x1: ax.left, x2: ax.left + ax.plotW, y1: y, y2: y, ...DASH }, svg);
        text(svg, ax.left + ax.plotW - 4, y - 5, o.yLimitLabel, { "text-anchor": "end", style: `fill:${LIMIT}` });
      }
      // The trade-off of this projection: the front points no other front point beats on both
      // axes (a 3-objective front has points that win only on the third), as a staircase from
      // each across to the next one's x, then up to it.
      let best = -Infinity;
      const front = pts.filter((d) => d.kind === "front" && num(d.p.y)).map((d) => d.p)
        .sort((a, b) => a.x - b.x || b.y - a.y)
        .filter((p) => (p.y > best ? ((best = p.y), true) : false));
      if (front.length > 1) {
        const d = front.map((p, i) => (i ? `H${ax.sx(p.x)}V${ax.sy(p.y)}` : `M${ax.sx(p.x)},${ax.sy(p.y)}`));
        el("path", { class: "sp-front-line", d: d.join(""), fill: "none", stroke: LINE, "stroke-width": 1.5,
          "stroke-opacity": 0.8 }, svg);
      }
      layers = { pts: el("g", { class: "sp-points" }, svg), ring: el("g", { class: "sp-rings" }, svg) };
      for (const { p, kind } of pts.sort((a, b) => RANK[a.kind] - RANK[b.kind])) {
        const px = ax.sx(p.x);
        // no-accuracy points sit in the strip, jittered a little by id so neighbours separate
        const py = num(p.y) ? ax.sy(p.y) : ax.stripY + ((((p.id | 0) * 37) % 7) - 3) * 1.2;
        const title = p.title || `#${raw(p.id)}\n${o.xLabel || "x"}: ${o.xFormat(p.x)}\n` +
          `${o.yLabel || "y"}: ${num(p.y) ? o.yFormat(p.y) : "-"}`;
        const node = addMarker(layers.pts, shape(kind, px, py, fill(p.color)), p, kind, title);
        if (p.id != null) index.set(String(p.id), { node, px, py });
      }
      applyHighlight();
    }

    const m = mount(container, draw);
    return {
      update(next) { points = next || []; m.render(); },
      highlight(id) { hl = id; applyHighlight(); },
      destroy: m.destroy,
    };
  }

  // ---- line --------------------------------------------------------------------------------
  function line(container, opts = {}) {
    const o = { xFormat: String, yFormat: String, ...opts };
    let points = o.points || [];

    function draw(svg, W, H) {
      const pts = points.filter((p) => p && num(p.x) && num(p.y)).sort((a, b) => a.x - b.x);
      if (!pts.length) return empty(svg, W, H);
      const xs = pts.map((p) => p.x);
      let xLo = Math.min(...xs), xHi = Math.max(...xs);
      if (xHi === xLo) { xLo -= 1; xHi += 1; }
      const [yLo, yHi] = valueDomain(pts.map((p) => p.y), o.yMin, o.yMax);
      const ax = axes(svg, W, H, 16, { lo: xLo, hi: xHi, fmt: o.xFormat, label: o.xLabel, integer: o.xInteger },
        { lo: yLo, hi: yHi, fmt: o.yFormat, label: o.yLabel }, false);
      const d = pts.map((p, i) => `${i ? "L" : "M"}${ax.sx(p.x)},${ax.sy(p.y)}`).join("");
      el("path", { class: "sp-line", d, fill: "none", stroke: LINE, "stroke-width": 2 }, svg);
      const g = el("g", { class: "sp-points" }, svg);
      for (const p of pts) {
        const c = el("circle",
          { cx: ax.sx(p.x), cy: ax.sy(p.y), r: 3.5, fill: LINE, stroke: "#fff", "stroke-width": 1 }, g);
        c.setAttribute("class", "pt pt-line");
        c.setAttribute("data-x", raw(p.x));
        c.setAttribute("data-y", raw(p.y));
        el("title", {}, c).textContent = p.title ||
          `${o.xLabel || "x"}: ${o.xFormat(p.x)}\n${o.yLabel || "y"}: ${o.yFormat(p.y)}`;
      }
    }

    const m = mount(container, draw);
    return { update(next) { points = next || []; m.render(); }, destroy: m.destroy };
  }

  window.SparsePlot = { scatter, line, formatBytes, formatPercent };
})();
