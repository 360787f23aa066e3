/* sparsearch dashboard: helpers every page script uses (no libraries, no build step). */
"use strict";
window.Sparse = (() => {
  /** GET a JSON document of the API with the session cookie; throws with the API's detail. */
  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401) { window.location.assign("/login?next=" + encodeURIComponent(location.pathname)); throw new Error("signed out"); }
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
      const error = new Error(detail); error.status = response.status; throw error;
    }
    return response.json();
  }
  /** Forms with data-confirm ask before they submit (deleting a job). */
  function confirmForms(root = document) {
    root.querySelectorAll("form.js-confirm").forEach((form) => {
      form.addEventListener("submit", (event) => {
        if (!window.confirm(form.dataset.confirm || "Are you sure?")) event.preventDefault();
      });
    });
  }
  /** Write a job's progress into an element rendered by the _progress.html macro. */
  function setProgress(root, p) {
    if (!root) return;
    const bar = root.querySelector("progress");
    if (bar) { bar.max = p.budget; bar.value = p.trained; bar.textContent = `${p.trained} of ${p.budget}`; }
    for (const key of ["trained", "running", "infeasible", "failed"]) {
      const el = root.querySelector(`[data-role="${key}"]`);
      if (el) el.textContent = String(p[key]);
    }
  }
  const pct = (v) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)} %`);
  const hv = (v) => (v === null || v === undefined ? "–" : v.toFixed(3));
  document.addEventListener("DOMContentLoaded", () => confirmForms());
  return { getJSON, confirmForms, setProgress, pct, hv };
})();
