// The jobs table: filters by state and kind, paging by the API's cursor, and live rows. One event stream
// (GET /v1/dashboard/events?job=..) carries every unfinished row's changes: a stream per row would use up the
// browser's six connections per host. On the newest page it also carries the jobs submitted meanwhile (by any
// client, of the table's state and kind), which it adds on top.

import { getJSON, isAbort, readEvents } from "./api.js";
import { FINISHED, h, jobDuration, localTime, progressBar, setProgress, stateBadge } from "./dom.js";

const STATES = ["queued", "running", "succeeded", "failed", "cancelled"];

/** The kinds the service runs ({kind, models, ...}), or [] where it cannot say. */
export async function listKinds(signal) {
  try {
    return (await getJSON("/v1/kinds", { signal })).kinds;
  } catch (err) {
    if (isAbort(err)) throw err;
    return [];
  }
}

function select(name, values, chosen, onchange) {
  return h("select", { name, "aria-label": name, onchange },
    h("option", { value: "" }, `any ${name}`),
    values.map((v) => h("option", { value: v, selected: v === chosen }, v)));
}

function row(job) {
  const tr = h("tr", { "data-job": job.id });
  fillRow(tr, job);
  return tr;
}

function fillRow(tr, job) {
  tr.replaceChildren(
    h("td", {}, h("a", { href: `#/jobs/${job.id}` }, h("code", {}, job.id.slice(0, 12)))),
    h("td", {}, job.kind), h("td", {}, job.model), h("td", { class: "state-cell" }, stateBadge(job.state)),
    h("td", {}, progressBar(job.progress)),
    h("td", {}, localTime(job.created_at)), h("td", {}, localTime(job.started_at)),
    h("td", {}, localTime(job.finished_at)), h("td", {}, jobDuration(job)), h("td", {}, String(job.attempts)));
}

/** Follow the unfinished rows until each is final; a row's bar only ever moves forward. With `newJobs` (the
 * table's filters), jobs created from now on come as new rows on top, and the stream stays open. */
async function follow(body, jobs, signal, newJobs) {
  const open = jobs.filter((j) => !FINISHED.has(j.state));
  if (!open.length && !newJobs) return;
  const query = new URLSearchParams(open.map((j) => ["job", j.id]));
  if (newJobs) {
    query.set("new", "true");
    for (const [k, v] of Object.entries(newJobs)) if (v) query.set(k, v);
  }
  try {
    await readEvents(`/v1/dashboard/events?${query}`, (name, job) => {
      if (name === "live") {  // the server hears every new job from here on
        body.parentElement.dataset.live = "true";
        return;
      }
      const tr = body.querySelector(`tr[data-job="${job.id}"]`);
      if (!tr) {
        body.prepend(row(job));
        document.getElementById("no-jobs")?.remove();
        return;
      }
      const bar = tr.querySelector(".bar");
      const shown = Number(bar.getAttribute("aria-valuenow"));
      fillRow(tr, job);
      const fresh = tr.querySelector(".bar");
      setProgress(fresh, shown);  // start where it was, then let the CSS transition move it
      requestAnimationFrame(() => setProgress(fresh, Math.max(shown, job.progress)));
    }, signal);
  } catch (err) {
    if (!isAbort(err)) body.parentElement.after(h("p", { class: "error" }, `live updates stopped: ${err.message}`));
  }
}

export async function renderJobs(view, signal, query) {
  const state = query.get("state") || "", kind = query.get("kind") || "", cursor = query.get("cursor");
  const limit = query.get("limit") || "50";
  const go = (changes) => {
    const next = new URLSearchParams({ state, kind, limit: limit === "50" ? "" : limit, ...changes });
    for (const [k, v] of [...next]) if (!v) next.delete(k);
    location.hash = `#/jobs?${next}`;
  };
  const params = new URLSearchParams({ limit });
  if (state) params.set("state", state);
  if (kind) params.set("kind", kind);
  if (cursor) params.set("cursor", cursor);
  const [page, kinds] = await Promise.all([getJSON(`/v1/jobs?${params}`, { signal }), listKinds(signal)]);
  const body = h("tbody", {}, page.data.map(row));
  view.append(
    h("h1", {}, "Jobs"),
    h("div", { class: "toolbar" },
      select("state", STATES, state, (e) => go({ state: e.target.value, cursor: "" })),
      select("kind", kinds.map((k) => k.kind), kind, (e) => go({ kind: e.target.value, cursor: "" })),
      h("button", { type: "button", onclick: () => refresh() }, "Refresh"),
      cursor ? h("button", { type: "button", onclick: () => go({ cursor: "" }) }, "Newest") : null,
      page.next_cursor ? h("button", { type: "button", onclick: () => go({ cursor: page.next_cursor }) }, "Older")
        : null,
      h("span", { class: "muted" }, `${page.count} jobs on this page`)),
    h("table", { id: "jobs" },
      h("thead", {}, h("tr", {}, ["id", "kind", "model", "state", "progress", "queued", "started", "finished",
        "duration", "attempts"].map((c) => h("th", {}, c)))),
      body));
  if (!page.data.length) view.append(h("p", { class: "muted", id: "no-jobs" }, "No jobs yet: submit one."));
  await follow(body, page.data, signal, cursor ? null : { state, kind });
}

function refresh() {
  window.dispatchEvent(new HashChangeEvent("hashchange"));
}
