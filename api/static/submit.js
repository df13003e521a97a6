// The submit form of a job kind, generated from its params JSON schema (GET /v1/kinds): a field a param, file
// inputs uploaded through POST /v1/artifacts first, and a 422's message shown at the field it names. "Run again"
// (?from=<job id>) fills the form with that job's model, params and inputs.

import { ApiError, getJSON, postJSON, upload } from "./api.js";
import { h } from "./dom.js";
import { listKinds } from "./jobs.js";

const ACCEPT = { audio: "audio/*,.wav,.flac", image: "image/*", tokens: ".safetensors", text: ".txt,text/plain" };

function typesOf(schema) {
  return (schema.anyOf || [schema]).map((s) => s.type).filter(Boolean);
}

/** The input element of one param: a number, checkbox, choice or text box, with the schema's limits shown. */
function paramInput(name, schema, value) {
  const types = typesOf(schema);
  const enums = schema.enum || schema.anyOf?.flatMap((s) => s.enum || []);
  if (types.length === 1 && types[0] === "boolean") return h("input", { type: "checkbox", name, checked: !!value });
  if (enums?.length) {
    return h("select", { name }, h("option", { value: "" }, ""),
      enums.map((v) => h("option", { value: String(v), selected: v === value }, String(v))));
  }
  const numeric = types.length === 1 && ["integer", "number"].includes(types[0]);
  return h("input", { type: numeric ? "number" : "text", name, step: types[0] === "number" ? "any" : undefined,
    value: value === undefined || value === null ? "" : typeof value === "object" ? JSON.stringify(value) : String(value) });
}

/** The value a field holds, typed as its schema says (a union tries its members in order). */
function readParam(input, schema) {
  if (input.type === "checkbox") return input.checked;
  const text = input.value.trim();
  for (const type of typesOf(schema)) {
    if (type === "integer" && /^-?\d+$/.test(text)) return Number(text);
    if (type === "number" && text !== "" && !Number.isNaN(Number(text))) return Number(text);
    if ((type === "array" || type === "object") && /^[[{]/.test(text)) return JSON.parse(text);
    if (type === "string") return text;
  }
  return text;  // the server says what is wrong with it
}

function field(name, label, control, hint) {
  return h("div", { class: "field", "data-field": name }, h("label", {}, label, " ", control),
    hint ? h("div", { class: "hint" }, hint) : null, h("div", { class: "error", "data-error-for": name }));
}

function limits(schema) {
  const parts = (schema.anyOf || [schema]).flatMap((s) => [
    s.minimum !== undefined ? `min ${s.minimum}` : null, s.exclusiveMinimum !== undefined ? `> ${s.exclusiveMinimum}` : null,
    s.maximum !== undefined ? `max ${s.maximum}` : null, s.exclusiveMaximum !== undefined ? `< ${s.exclusiveMaximum}` : null,
  ]).filter(Boolean);
  return [schema.description, parts.join(", "), schema.default !== undefined ? `default ${JSON.stringify(schema.default)}` : ""]
    .filter(Boolean).join(" · ");
}

/** Put each "name: message" part of a 422 at its field; the rest above the submit button. */
function showErrors(form, detail, kind) {
  const general = [];
  const body = detail.startsWith(`invalid params for ${kind}: `) ? detail.slice(`invalid params for ${kind}: `.length) : detail;
  for (const part of body.split("; ")) {
    const name = part.split(":")[0].replace(/^params\./, "").split(".")[0];
    const slot = form.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
    if (slot && part.includes(":")) slot.textContent = part;
    else general.push(part);
  }
  form.querySelector("#form-error").textContent = general.join("; ");
}

export async function renderSubmit(view, signal, kindName, fromId) {
  const kinds = await listKinds(signal);
  const from = fromId ? await getJSON(`/v1/jobs/${fromId}`, { signal }) : null;
  kindName = kindName || from?.kind || kinds[0]?.kind;
  const kind = kinds.find((k) => k.kind === kindName);
  view.append(h("h1", {}, "Submit a job"), h("div", { class: "toolbar" },
    h("select", { id: "kind", "aria-label": "kind", onchange: (e) => { location.hash = `#/submit/${e.target.value}`; } },
      kinds.map((k) => h("option", { value: k.kind, selected: k.kind === kindName }, k.kind))),
    h("span", { class: "muted" }, kind?.description || "")));
  if (!kind) {
    view.append(h("p", { class: "error" }, kinds.length ? `unknown job kind ${kindName}` : "the service lists no job kinds"));
    return;
  }
  const properties = kind.params_schema.properties || {};
  const required = new Set(kind.params_schema.required || []);
  const given = { ...(from?.params || {}) };
  const models = [...new Set([...(kind.models || []), ...(from ? [from.model] : [])])];
  const form = h("form", { id: "submit-form", novalidate: true },
    field("model", "model", h("select", { name: "model" },
      models.map((m) => h("option", { value: m, selected: m === from?.model }, m)))),
    Object.entries(kind.inputs).map(([name, media]) => field(`input:${name}`, `${name} (${media})`,
      h("input", { type: "file", name: `input:${name}`, accept: ACCEPT[media] || "" }),
      from?.inputs[name] ? `or leave empty to reuse artifact ${from.inputs[name]}` : null)),
    Object.entries(properties).map(([name, schema]) => {
      const value = name in given ? given[name] : schema.default;
      delete given[name];
      return field(name, `${schema.title || name}${required.has(name) ? " *" : ""}`, paramInput(name, schema, value),
        limits(schema));
    }),
    field("extra", "other params (JSON)", h("textarea", { name: "extra", rows: 2 },
      Object.keys(given).length ? JSON.stringify(given) : "")),
    h("p", { class: "error", id: "form-error" }),
    h("button", { type: "submit" }, "Submit"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const slot of form.querySelectorAll(".error")) slot.textContent = "";
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const params = form.elements.extra.value.trim() ? JSON.parse(form.elements.extra.value) : {};
      for (const [name, schema] of Object.entries(properties)) {
        const value = readParam(form.elements[name], schema);
        const changed = JSON.stringify(value) !== JSON.stringify(schema.default ?? (typeof value === "boolean" ? false : ""));
        if (required.has(name) || changed || (from && name in from.params)) params[name] = value;
      }
      const inputs = {};
      for (const name of Object.keys(kind.inputs)) {
        const file = form.elements[`input:${name}`].files[0];
        if (file) inputs[name] = (await upload(file)).id;
        else if (from?.inputs[name]) inputs[name] = from.inputs[name];
      }
      const job = await postJSON("/v1/jobs", { kind: kind.kind, model: form.elements.model.value, params, inputs });
      location.hash = `#/jobs/${job.id}`;
    } catch (err) {
      if (err instanceof ApiError) showErrors(form, err.message, kind.kind);
      else form.querySelector("#form-error").textContent = String(err.message || err);
    } finally {
      button.disabled = false;
    }
  });
  view.append(form);
}
