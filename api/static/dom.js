// Small DOM and formatting helpers shared by the views.

/** h("a", {href: "#"}, "text", child...): an element; attributes starting with "on" become listeners. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.flat().filter((c) => c !== undefined && c !== null));
  return node;
}

/** Epoch seconds as a local date and time (the API sends UTC epochs and ISO strings). */
export function localTime(epoch) {
  return epoch ? new Date(epoch * 1000).toLocaleString() : "";
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

export function jobDuration(job) {
  if (!job.started_at) return "";
  return duration((job.finished_at || Date.now() / 1000) - job.started_at);
}

export function bytes(n) {
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function progressBar(fraction) {
  const bar = h("span", { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "1" },
    h("span"));
  setProgress(bar, fraction);
  return bar;
}

export function setProgress(bar, fraction) {
  bar.setAttribute("aria-valuenow", String(fraction));
  bar.firstChild.style.width = `${Math.round(fraction * 100)}%`;
}

export function stateBadge(state) {
  return h("span", { class: `state state-${state}`, "data-state": state }, state);
}

export const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
