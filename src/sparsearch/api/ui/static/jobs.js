/* Jobs page: live progress of the listed jobs (one GET of the same page of /v1/jobs every few
   seconds while any of them is unsettled; nothing is polled once all are settled). */
"use strict";
(() => {
  const config = JSON.parse(document.getElementById("jobs-poll").textContent);
  const SETTLED = new Set(["completed", "failed", "cancelled", "interrupted"]);
  const rows = () => Array.from(document.querySelectorAll("tr[data-job-id]"));
  const PERIOD_MS = 3000;

  async function poll() {
    if (!rows().some((r) => !SETTLED.has(r.dataset.status))) return;
    const query = new URLSearchParams({ limit: config.limit, offset: config.offset });
    if (config.status) query.set("status", config.status);
    try {
      const page = await Sparse.getJSON(`/v1/jobs?${query}`);
      const byId = new Map(page.data.map((j) => [j.id, j]));
      let moved = false;
      for (const row of rows()) {
        const job = byId.get(row.dataset.jobId);
        if (!job) continue;
        if (job.status !== row.dataset.status) moved = moved || SETTLED.has(job.status);
        row.dataset.status = job.status;
        const badge = row.querySelector('[data-role="status"]');
        badge.textContent = job.status; badge.className = `badge badge-${job.status}`;
        Sparse.setProgress(row.querySelector('[data-role="progress"]'), job.progress);
        row.querySelector('[data-role="best"]').textContent = Sparse.pct(job.best_accuracy);
        row.querySelector('[data-role="hv"]').textContent = Sparse.hv(job.hypervolume);
      }
      if (moved) { window.location.reload(); return; } // a settled job gets its Delete button
    } catch (error) {
      if (error.message === "signed out") return;
    }
    window.setTimeout(poll, PERIOD_MS);
  }
  window.setTimeout(poll, PERIOD_MS);
})();
