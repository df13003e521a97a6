// Models (the zoo, the kinds each serves, its batching and placement needs, which Ray hosts hold it) and Workers (what Flower shows: Celery workers
// and their queues, queue depth, jobs per minute and run latency over the last hour as a small SVG chart).

import { getJSON } from "./api.js";
import { bytes, duration, h, localTime } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const REFRESH_MS = 10000;

function table(id, columns, rows) {
  return h("table", { id }, h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c))))));
}

export async function renderModels(view, signal) {
  const models = await getJSON("/v1/models", { signal });
  const columns = ["name", "class", "kinds", "batching", "needs", "loaded on"];
  view.append(h("h1", {}, "Models"), table("models", columns, models.data.map((m) => [
    m.name, m.model_class, m.kinds.join(", "),
    `max ${m.batching.max_batch} · wait ${m.batching.max_wait_ms} ms`,
    `GPU ${m.needs.gpu}` + (m.needs.memory_mb ? ` · ${m.needs.memory_mb} MB` : ""),
    m.loaded.length ? h("div", {}, m.loaded.map((host) => h("div", {},
      `replica ${host.name.split(":").pop()} on node ${host.node_id.slice(0, 12)} · ${host.device} · ${host.inflight} in flight · ${host.batches} batches · `
      + `${bytes(host.memory_bytes)}`))) : h("span", { class: "muted" }, "not loaded"),
  ])));
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  node.append(...children);
  return node;
}

/** Bars: jobs finished per minute; line: their mean run time (own scale, right). */
function chart(minutes) {
  const width = 720, height = 160, pad = 28, step = (width - 2 * pad) / minutes.length;
  const most = Math.max(1, ...minutes.map((m) => m.finished));
  const slowest = Math.max(0.001, ...minutes.map((m) => m.mean_run_seconds || 0));
  const y = (v, top) => height - pad - (v / top) * (height - 2 * pad);
  const bars = minutes.map((m, i) => svg("rect", { x: pad + i * step, y: y(m.finished, most),
    width: Math.max(1, step - 1), height: height - pad - y(m.finished, most), fill: "#2a62c9" },
  svg("title", {}, `${localTime(m.minute)}: ${m.finished} jobs`)));
  const points = minutes.map((m, i) => (m.mean_run_seconds === null ? null
    : `${pad + (i + 0.5) * step},${y(m.mean_run_seconds, slowest)}`)).filter(Boolean);
  return svg("svg", { class: "chart", id: "throughput", width, height, viewBox: `0 0 ${width} ${height}` },
    ...bars, svg("polyline", { points: points.join(" "), fill: "none", stroke: "#b3261e", "stroke-width": 2 }),
    svg("text", { x: pad, y: 14, "font-size": 11 }, `jobs/min (max ${most})`),
    svg("text", { x: width - pad, y: 14, "font-size": 11, "text-anchor": "end", fill: "#b3261e" },
      `mean run time (max ${duration(slowest)})`),
    svg("text", { x: pad, y: height - 8, "font-size": 11 }, "-60 min"),
    svg("text", { x: width - pad, y: height - 8, "font-size": 11, "text-anchor": "end" }, "now"));
}

export async function renderWorkers(view, signal) {
  while (!signal.aborted) {
    const status = await getJSON("/v1/workers", { signal });
    const finished = status.minutes.reduce((n, m) => n + m.finished, 0);
    view.replaceChildren(...[h("h1", {}, "Workers and queues"),
      table("workers", ["worker", "queues", "active", "processed", "concurrency", "pid", "uptime", "last heartbeat"],
        status.workers.map((w) => [w.name, w.queues.join(", "), String(w.active), String(w.processed),
          String(w.concurrency ?? ""), String(w.pid ?? ""), duration(w.uptime_s), localTime(w.heartbeat_at)])),
      status.workers.length ? null : h("p", { class: "error" }, "no worker answered"),
      h("h2", {}, "Queues"),
      table("queues", ["family", "queued jobs"], status.queues.map((q) => [q.family, String(q.depth)])),
      h("h2", {}, `Last hour: ${finished} jobs finished`), chart(status.minutes),
      h("h2", {}, "Run time by kind (all time)"), table("run-totals", ["kind", "runs", "mean run time"],
        status.run_totals.map((k) => [k.kind, String(k.runs), duration(k.mean_run_seconds)]))].filter(Boolean));
    await new Promise((resolve) => { setTimeout(resolve, REFRESH_MS); });
  }
}
