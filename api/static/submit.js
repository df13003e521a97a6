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
    value: value === undefined || value === null ? "" : typeof value === "object" ? JSON.stringify(value)
      : String(value) });
}

/** The value a field holds, typed as its schema says (a union tries its members in order). */
function readParam(input, schema) {
  if (input.type === "checkbox") return input.checked;
  const text = input.value.trim();
  for (const type of typesOf(schema)) {
    if (type === "boolean" && /^(true|false)$/.test(text)) return text === "true";
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
    s.minimum !== undefined ? `min ${s.minimum}` : null,
    s.exclusiveMinimum !== undefined ? `> ${s.exclusiveMinimum}` : null,
    s.maximum !== undefined ? `max ${s.maximum}` : null,
    s.exclusiveMaximum !== undefined ? `< ${s.exclusiveMaximum}` : null,
  ]).filter(Boolean);
  const fallback = schema.default !== undefined ? `default ${JSON.stringify(schema.default)}` : "";
  return [schema.description, parts.join(", "), fallback].filter(Boolean).join(" · ");
}

/** Put each "name: message" part of a 422 at its field; the rest above the submit button. */
function showErrors(form, detail, kind) {
  const general = [];
  const prefix = `invalid params for ${kind}: `;
  const body = detail.startsWith(prefix) ? detail.slice(prefix.length) : detail;
  for (const part of body.split("; ")) {
    const name = part.split(":")[0].replace(/^params\./, "").split(".")[0];
    const slot = form.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
    if (slot && part.includes(":")) slot.textContent = part;
    else general.push(part);
  }
  form.querySelector("#form-error").textContent = general.join("; ");
}

/** The params fields of one model's schema; what `given` holds beyond them goes to the JSON box. */
function paramsSection(schema, given) {
  const properties = schema.properties || {};
  const required = new Set(schema.required || []);
  const rest = { ...given };
  const fields = Object.entries(properties).map(([name, property]) => {
    const value = name in rest ? rest[name] : property.default;
    delete rest[name];
    return field(name, `${property.title || name}${required.has(name) ? " *" : ""}`,
      paramInput(name, property, value), limits(property));
  });
  const node = h("div", { id: "params" }, fields, field("extra", "other params (JSON)",
    h("textarea", { name: "extra", rows: 2 }, Object.keys(rest).length ? JSON.stringify(rest) : "")));
  return { node, properties, required };
}

/** The params to send: required ones, those changed from their default, and those the copied job had. */
function readParams(form, section, copied) {
  const params = form.elements.extra.value.trim() ? JSON.parse(form.elements.extra.value) : {};
  for (const [name, schema] of Object.entries(section.properties)) {
    const value = readParam(form.elements[name], schema);
    const unset = schema.default ?? (typeof value === "boolean" ? false : "");
    if (section.required.has(name) || name in copied || JSON.stringify(value) !== JSON.stringify(unset)) {
      params[name] = value;
    }
  }
  return params;
}

/** ``query``: ``from=<job id>`` copies a job; ``model=`` and ``<input name>=<artifact id>`` preset those. */
export async function renderSubmit(view, signal, kindName, query) {
  const kinds = await listKinds(signal);
  const from = query.get("from") ? await getJSON(`/v1/jobs/${query.get("from")}`, { signal }) : null;
  kindName = kindName || from?.kind || kinds[0]?.kind;
  const kind = kinds.find((k) => k.kind === kindName);
  view.append(h("h1", {}, "Submit a job"), h("div", { class: "toolbar" },
    h("select", { id: "kind", "aria-label": "kind",
      onchange: (e) => { location.hash = `#/submit/${e.target.value}`; } },
      kinds.map((k) => h("option", { value: k.kind, selected: k.kind === kindName }, k.kind))),
    h("span", { class: "muted" }, kind?.description || "")));
  if (!kind) {
    const why = kinds.length ? `unknown job kind ${kindName}` : "the service lists no job kinds";
    view.append(h("p", { class: "error" }, why));
    return;
  }
  const copied = from?.params || {};
  const schemaOf = (model) => kind.params_schema_by_model?.[model] || kind.params_schema;
  const models = [...new Set([...(kind.models || []), ...(from ? [from.model] : [])])];
  const model = from?.model || (models.includes(query.get("model")) ? query.get("model") : models[0]);
  const reused = (name) => query.get(name) || from?.inputs[name];
  let section = paramsSection(schemaOf(model), copied);
  const onModel = (e) => {
    const next = paramsSection(schemaOf(e.target.value), copied);
    section.node.replaceWith(next.node);
    section = next;
  };
  const form = h("form", { id: "submit-form", novalidate: true },
    field("model", "model", h("select", { name: "model", onchange: onModel },
      models.map((m) => h("option", { value: m, selected: m === model }, m)))),
    Object.entries(kind.inputs).map(([name, media]) => field(`input:${name}`, `${name} (${media})`,
      h("input", { type: "file", name: `input:${name}`, accept: ACCEPT[media] || "" }),
      reused(name) ? `or leave empty to use artifact ${reused(name)}` : null)),
    section.node,
    h("p", { class: "error", id: "form-error" }),
    h("button", { type: "submit" }, "Submit"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const slot of form.querySelectorAll(".error")) slot.textContent = "";
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const params = readParams(form, section, copied);
      const inputs = {};
      for (const name of Object.keys(kind.inputs)) {
        const file = form.elements[`input:${name}`].files[0];
        if (file) inputs[name] = (await upload(file)).id;
        else if (reused(name)) inputs[name] = reused(name);
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
