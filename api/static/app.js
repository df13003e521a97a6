// The dashboard's router: #/jobs, #/jobs/<id>, #/submit[/<kind>][?from=<job id>|model=..&<input>=<artifact>],
// #/models, #/workers.
// Each view renders into <main> and gets an AbortSignal that fires when the user leaves it (open event streams
// and downloads stop with it).

import { isAbort } from "./api.js";
import { h } from "./dom.js";
import { renderJob } from "./job.js";
import { renderJobs } from "./jobs.js";
import { renderModels, renderWorkers } from "./status.js";
import { renderSubmit } from "./submit.js";

const routes = [
  [/^#\/jobs\/([0-9a-f]+)$/, (view, signal, m) => renderJob(view, signal, m[1])],
  [/^#\/submit(?:\/([\w.]+))?$/, (view, signal, m, query) => renderSubmit(view, signal, m[1], query)],
  [/^#\/models$/, (view, signal) => renderModels(view, signal)],
  [/^#\/workers$/, (view, signal) => renderWorkers(view, signal)],
  [/^#\/jobs$/, (view, signal, m, query) => renderJobs(view, signal, query)],
];

let current = null;

async function route() {
  current?.abort();
  current = new AbortController();
  const signal = current.signal;
  const [path, search] = (location.hash || "#/jobs").split("?");
  const query = new URLSearchParams(search || "");
  const view = document.getElementById("view");
  view.replaceChildren();
  for (const link of document.querySelectorAll("header nav a")) {
    link.classList.toggle("active", path.startsWith(link.getAttribute("href")));
  }
  const found = routes.find(([pattern]) => pattern.test(path)) || routes[routes.length - 1];
  try {
    await found[1](view, signal, path.match(found[0]) || [], query);
  } catch (err) {
    if (!isAbort(err)) view.append(h("p", { class: "error", id: "view-error" }, String(err.message || err)));
  }
}

window.addEventListener("hashchange", route);
route();
