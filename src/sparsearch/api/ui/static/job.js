/* Job page: live progress, the Pareto plots, hypervolume and the trial table.

   Polling is incremental: every 2 s one GET of the job (its counts); only when they move, the
   trials from the first unfinished one on (finished trials do not change; the front's flags do,
   and the front is read whole: it is small), and the hypervolume trace. Once the job settles,
   one full read, then no more polling. */
"use strict";
(() => {
  const page = JSON.parse(document.getElementById("job-data").textContent);
  const SETTLED = new Set(page.settled);
  const FINISHED = new Set(["completed", "failed", "infeasible"]);
  const PERIOD_MS = 2000, PAGE = 1000, ROWS = 20;
  const bytes = SparsePlot.formatBytes, pct = SparsePlot.formatPercent;
  const trials = [];            // by position in index order
  let settledPrefix = 0;        // leading trials that are finished (never re-read while polling)
  let front = new Map();        // index -> front trial (with accounted_flash_bytes)
  let hvTrace = [];
  let signature = "";
  let picked = page.pick;

  const accuracy = (t) => (t.int8_accuracy ?? t.accuracy);
  const flashOf = (t) => (front.get(t.index)?.accounted_flash_bytes ?? t[page.flash_field] ?? t.est_flash_bytes);
  const ramOf = (t) => (t.ram_bytes ?? t.est_ram_bytes);
  function kindOf(t) {
    if (front.has(t.index)) return "front";
    if (t.status === "completed") return t.feasible ? "feasible" : "over";
    return t.status; // infeasible, failed (queued/running are not plotted)
  }
  function pruningText(p) {
    if (!p || !p.method || p.method === "none") return "none";
    return `${p.method} ${Math.round(100 * (p.level || 0))} %`;
  }
  function title(t) {
    const kind = { front: "on the front", feasible: "dominated", over: "over a limit", infeasible: "infeasible", failed: "failed" }[kindOf(t)];
    const lines = [`Trial ${t.index} · ${kind}`];
    if (accuracy(t) != null) lines.push(`accuracy ${pct(accuracy(t))}${t.int8_accuracy != null ? " (int8)" : ""}`);
    lines.push(`flash ${bytes(flashOf(t))} · RAM ${bytes(ramOf(t))}`);
    if (t.macs != null) lines.push(`${t.macs.toLocaleString("en")} MACs · pruning ${pruningText(t.pruning)}`);
    if (t.error) lines.push(t.error.slice(0, 120));
    return lines.join("\n");
  }
  function points(x, color) {
    return trials.filter((t) => FINISHED.has(t.status)).map((t) => ({
      id: t.index, x: x(t), y: t.status === "completed" ? accuracy(t) : null, color: color(t),
      kind: kindOf(t), title: title(t), href: `/jobs/${page.id}/trials/${t.index}`,
    }));
  }

  const flashPlot = SparsePlot.scatter(document.getElementById("plot-flash"), {
    xLabel: page.flash_accounting === "sparse" ? "flash (non-zero weights)" : "flash", yLabel: "accuracy",
    colorLabel: "RAM", xFormat: bytes, yFormat: pct, colorFormat: bytes, yMax: 1,
    xLimit: page.flash_limit, xLimitLabel: "flash limit", points: [],
  });
  const ramPlot = SparsePlot.scatter(document.getElementById("plot-ram"), {
    xLabel: "RAM", yLabel: "accuracy", colorLabel: "flash", xFormat: bytes, yFormat: pct,
    colorFormat: bytes, yMax: 1, xLimit: page.ram_limit,
    xLimitLabel: page.ram_margin ? "RAM limit − margin" : "RAM limit", points: [],
  });
  const hvPlot = SparsePlot.line(document.getElementById("plot-hv"), {
    xLabel: "trained trials", yLabel: "hypervolume", xFormat: String, xInteger: true, yFormat: (v) => v.toFixed(2),
    yMin: 0, points: [],
  });

  // --- the trial table: sortable, paged, optionally the front only --------------------------
  const COLUMNS = [
    { key: "index", label: "#", num: true, value: (t) => t.index, text: (t) => `<a href="/jobs/${page.id}/trials/${t.index}">${t.index}</a>` },
    { key: "status", label: "Status", value: (t) => kindOf(t) === "front" ? "front" : t.status, text: (t) => `<span class="badge badge-${kindOf(t) === "over" ? "over" : t.status}">${kindOf(t) === "over" ? "over limit" : t.status}</span>${front.has(t.index) ? ' <span class="badge badge-front">front</span>' : ""}` },
    { key: "accuracy", label: "Accuracy", num: true, value: accuracy, text: (t) => pct(accuracy(t)) },
    { key: "flash", label: "Flash", num: true, value: flashOf, text: (t) => bytes(flashOf(t)) },
    { key: "ram", label: "RAM", num: true, value: ramOf, text: (t) => bytes(ramOf(t)) },
    { key: "macs", label: "MACs", num: true, value: (t) => t.macs, text: (t) => (t.macs == null ? "–" : t.macs.toLocaleString("en")) },
    { key: "pruning", label: "Pruning", value: (t) => pruningText(t.pruning), text: (t) => escapeHtml(pruningText(t.pruning)) },
    { key: "train", label: "Train time", num: true, value: (t) => t.train_seconds, text: (t) => (t.train_seconds == null ? "–" : `${t.train_seconds.toFixed(1)} s`) },
    { key: "generator", label: "Proposed by", value: (t) => t.generator || "", text: (t) => escapeHtml(t.generator || "–") },
  ];
  const table = { sort: "index", dir: 1, page: 0, frontOnly: false };
  const tableEl = document.getElementById("trials-table");
  const pagerEl = document.getElementById("trials-pager");
  function escapeHtml(s) { return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`); }

  function renderTable() {
    const column = COLUMNS.find((c) => c.key === table.sort);
    let rows = table.frontOnly ? trials.filter((t) => front.has(t.index)) : trials.slice();
    rows.sort((a, b) => {
      const va = column.value(a), vb = column.value(b);
      if (va == null && vb == null) return a.index - b.index;
      if (va == null) return 1;
      if (vb == null) return -1;
      return (va < vb ? -1 : va > vb ? 1 : a.index - b.index) * table.dir;
    });
    const pages = Math.max(1, Math.ceil(rows.length / ROWS));
    table.page = Math.min(table.page, pages - 1);
    const shown = rows.slice(table.page * ROWS, (table.page + 1) * ROWS);
    const head = COLUMNS.map((c) => {
      const sort = c.key === table.sort ? (table.dir > 0 ? "ascending" : "descending") : "none";
      return `<th scope="col" class="${c.num ? "num" : ""}" aria-sort="${sort}"><button type="button" class="sort" data-sort="${c.key}">${c.label}</button></th>`;
    }).join("");
    const body = shown.map((t) => `<tr data-trial="${t.index}" class="${front.has(t.index) ? "is-front" : ""}${t.index === picked ? " is-picked" : ""}">${COLUMNS.map((c) => `<td class="${c.num ? "num" : ""}">${c.text(t)}</td>`).join("")}</tr>`).join("");
    tableEl.innerHTML = `<thead><tr>${head}</tr></thead><tbody>${body || `<tr><td colspan="${COLUMNS.length}" class="muted">No trials yet.</td></tr>`}</tbody>`;
    pagerEl.innerHTML = pages > 1
      ? `<button type="button" data-page="-1" ${table.page === 0 ? "disabled" : ""}>← Previous</button><span>Page ${table.page + 1} of ${pages} · ${rows.length} trials</span><button type="button" data-page="1" ${table.page >= pages - 1 ? "disabled" : ""}>Next →</button>`
      : `<span class="muted">${rows.length} trial${rows.length === 1 ? "" : "s"}</span>`;
  }
  tableEl.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-sort]");
    if (!button) return;
    const key = button.dataset.sort;
    table.dir = key === table.sort ? -table.dir : (key === "accuracy" ? -1 : 1);
    table.sort = key; table.page = 0;
    renderTable();
    tableEl.querySelector(`button[data-sort="${key}"]`).focus();
  });
  pagerEl.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-page]");
    if (!button) return;
    table.page += Number(button.dataset.page);
    renderTable();
  });
  document.getElementById("front-only").addEventListener("change", (event) => {
    table.frontOnly = event.target.checked; table.page = 0; renderTable();
  });

  function render() {
    flashPlot.update(points(flashOf, ramOf));
    ramPlot.update(points(ramOf, flashOf));
    hvPlot.update(hvTrace.map((p) => ({ x: p.trained, y: p.hypervolume, title: `${p.trained} trained: hypervolume ${p.hypervolume.toFixed(3)}` })));
    flashPlot.highlight(picked ?? null);
    ramPlot.highlight(picked ?? null);
    renderTable();
  }

  // --- reading ----------------------------------------------------------------------------
  async function readTrials(from) {
    for (let offset = from; ; offset += PAGE) {
      const got = await Sparse.getJSON(`/v1/jobs/${page.id}/trials?sort=index&limit=${PAGE}&offset=${offset}`);
      got.data.forEach((t, i) => { trials[offset + i] = t; });
      trials.length = Math.max(offset + got.data.length, Math.min(trials.length, got.count));
      if (offset + got.data.length >= got.count || got.data.length < PAGE) break;
    }
    settledPrefix = 0;
    while (settledPrefix < trials.length && FINISHED.has(trials[settledPrefix].status)) settledPrefix += 1;
  }
  async function readFront() {
    const next = new Map();
    for (let offset = 0; ; offset += PAGE) {
      const got = await Sparse.getJSON(`/v1/jobs/${page.id}/pareto?sort=index&limit=${PAGE}&offset=${offset}`);
      got.data.forEach((t) => next.set(t.index, t));
      if (offset + got.data.length >= got.count || got.data.length < PAGE) break;
    }
    front = next;
  }
  async function readTrace() {
    try { hvTrace = (await Sparse.getJSON(`/v1/jobs/${page.id}/hypervolume`)).data; }
    catch (error) { if (error.status !== 404) throw error; }
  }
  function summary(job) {
    const badge = document.getElementById("job-status");
    badge.textContent = job.status; badge.className = `badge badge-${job.status}`;
    Sparse.setProgress(document.getElementById("job-progress"), job.progress);
    document.getElementById("job-best").textContent = pct(job.best_accuracy);
    document.getElementById("job-hv").textContent = job.hypervolume == null ? "–" : job.hypervolume.toFixed(3);
  }

  let fullyRead = false;        // the settled job's last full read is done
  async function tick() {
    const live = document.getElementById("job-live");
    try {
      const job = await Sparse.getJSON(`/v1/jobs/${page.id}`);
      summary(job);
      const settled = SETTLED.has(job.status);
      const now = JSON.stringify([job.status, job.progress, job.hypervolume]);
      const last = settled && !fullyRead;   // once settled: one full read, then stop
      if (last || now !== signature) {
        signature = now;
        await readTrials(last ? 0 : settledPrefix);
        await readFront();
        await readTrace();
        render();
        fullyRead = settled;
      }
      live.textContent = settled ? `Finished: ${job.status}.` : `Live: updated ${new Date().toLocaleTimeString()}.`;
      if (!settled) window.setTimeout(tick, PERIOD_MS);
    } catch (error) {
      if (error.message === "signed out") return;
      live.textContent = `Could not update (${error.message}); retrying.`;
      window.setTimeout(tick, PERIOD_MS * 3);
    }
  }
  tick();
})();
