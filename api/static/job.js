// One job: state, live progress and message, cancel, run again, params, error, and every input and output
// previewed (images, an audio player, token files summarised from their safetensors header).

import { ApiError, artifactBlob, getJSON, isAbort, postJSON, readEvents } from "./api.js";
import { FINISHED, bytes, h, jobDuration, localTime, progressBar, setProgress, stateBadge } from "./dom.js";
import { parseSafetensors, tensorValues, tokenMap } from "./tokens.js";

function tokenSummary(buffer, imageTokens) {
  const file = parseSafetensors(buffer);
  const summary = h("div", { class: "token-summary" },
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "tensor"), h("th", {}, "dtype"), h("th", {}, "shape"))),
      h("tbody", {}, file.tensors.map((t) => h("tr", { "data-tensor": t.name },
        h("td", {}, t.name), h("td", {}, t.dtype), h("td", {}, `(${t.shape.join(", ")})`))))),
    Object.keys(file.metadata).length
      ? h("dl", {}, Object.entries(file.metadata).flatMap(([k, v]) => [h("dt", {}, k), h("dd", { "data-meta": k }, v)]))
      : null);
  if (imageTokens) {
    const codes = file.tensors.find((t) => tensorValues(buffer, file, t));
    if (codes) summary.append(h("p", { class: "muted" }, `token map of ${codes.name}`),
      tokenMap(tensorValues(buffer, file, codes), codes.shape));
  }
  return summary;
}

/** A card for one artifact: its preview by media type and a download link. */
async function artifactCard(name, id, job, signal, output = false) {
  const card = h("div", { class: "card", "data-artifact": name }, h("strong", {}, name), " ",
    h("code", { class: "muted" }, id.slice(0, 12)));
  try {
    const blob = await artifactBlob(id, signal);
    const url = URL.createObjectURL(blob);
    const type = blob.type || "application/octet-stream";
    card.append(h("div", { class: "muted" }, `${type}, ${bytes(blob.size)}`));
    if (type.startsWith("image/")) card.append(h("img", { src: url, alt: name }));
    else if (type.startsWith("audio/")) {
      card.append(h("div", {}, h("audio", { src: url, controls: true, preload: "metadata" })));
    }
    else if (type === "application/x-safetensors") {
      card.append(tokenSummary(await blob.arrayBuffer(), job.kind.startsWith("image.")));
      const family = job.kind.split(".")[0];
      if (output) {
        card.append(h("div", {}, h("a", { href: `#/submit/${family}.detokenize?model=${encodeURIComponent(job.model)}`
          + `&${encodeURIComponent(name)}=${id}`, class: "detokenize" }, "detokenize these tokens")));
      }
    } else if (type.startsWith("text/")) card.append(h("pre", {}, (await blob.text()).slice(0, 4000)));
    card.append(h("div", {}, h("a", { href: url, download: `${name}-${id.slice(0, 8)}` }, "download")));
  } catch (err) {
    if (isAbort(err)) throw err;
    card.append(h("p", { class: "error" }, err.message));
  }
  return card;
}

function header(job, onCancel) {
  const running = !FINISHED.has(job.state);
  return h("div", { id: "job-header" },
    h("h1", {}, `${job.kind} `, h("code", {}, job.id)),
    h("div", { class: "toolbar" }, stateBadge(job.state), progressBar(job.progress),
      h("span", { id: "job-message" }, job.message || ""),
      running ? h("button", { type: "button", id: "cancel", onclick: onCancel }, "Cancel") : null,
      h("a", { href: `#/submit/${job.kind}?from=${job.id}`, id: "run-again" }, "Run again")),
    h("dl", {}, [["model", job.model], ["queued", localTime(job.created_at)], ["started", localTime(job.started_at)],
      ["finished", localTime(job.finished_at)], ["duration", jobDuration(job)], ["attempts", String(job.attempts)],
      ["model host", job.host || "-"],
      ["priority", job.priority]].flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])),
    job.error ? h("p", { class: "error", id: "job-error" }, h("strong", {}, job.error.type), `: ${job.error.message}`)
      : null);
}

export async function renderJob(view, signal, id) {
  let job = await getJSON(`/v1/jobs/${id}`, { signal });
  const notice = h("p", { id: "job-notice", class: "error" });
  const onCancel = async () => {
    try {
      show(await postJSON(`/v1/jobs/${id}/cancel`));
      notice.textContent = "";
    } catch (err) {
      notice.textContent = err instanceof ApiError ? err.message : String(err);
    }
  };
  let shownProgress = job.progress;
  const show = (next) => {
    job = next;
    const fresh = header(job, onCancel);
    const bar = fresh.querySelector(".bar");
    setProgress(bar, shownProgress);
    document.getElementById("job-header").replaceWith(fresh);
    shownProgress = Math.max(shownProgress, job.progress);
    requestAnimationFrame(() => setProgress(bar, shownProgress));
  };
  const files = h("div", { id: "files" });
  view.append(header(job, onCancel), notice, h("h2", {}, "Params"), h("pre", { id: "params" },
    JSON.stringify(job.params, null, 2)), files);
  const renderFiles = async () => {
    const cards = (files, output) => Promise.all(Object.entries(files).map(([name, artifact]) =>
      artifactCard(name, artifact, job, signal, output)));
    const [inputs, outputs] = await Promise.all([cards(job.inputs, false), cards(job.outputs, true)]);
    files.replaceChildren(h("h2", {}, "Inputs"), h("div", { class: "grid", id: "inputs" }, inputs),
      h("h2", {}, "Outputs"), h("div", { class: "grid", id: "outputs" },
        outputs.length ? outputs : h("p", { class: "muted" }, FINISHED.has(job.state) ? "none" : "not yet")));
  };
  await renderFiles();
  if (FINISHED.has(job.state)) return;
  await readEvents(`/v1/jobs/${id}/events`, (_name, next) => show(next), signal);
  await renderFiles();  // the outputs exist now
}
