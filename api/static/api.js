// The service's HTTP API as the views use it: the API key (asked once, kept in sessionStorage, sent as a Bearer
// header, never in a URL), JSON calls that raise ApiError with the server's `detail`, and server-sent events
// read with fetch() so that the key header goes with them (EventSource cannot send headers).

const KEY = "mediaforge.apiKey";
let asking = null;

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

/** Show the key dialog (once for any number of refused calls) and keep what the user types. */
function askKey(reason) {
  if (!asking) {
    const dialog = document.getElementById("auth");
    document.getElementById("auth-reason").textContent = reason;
    asking = new Promise((resolve) => {
      dialog.addEventListener("close", () => {
        sessionStorage.setItem(KEY, document.getElementById("auth-key").value.trim());
        document.getElementById("auth-key").value = "";
        asking = null;
        resolve();
      }, { once: true });
    });
    dialog.showModal();
  }
  return asking;
}

/** fetch() with the key; a 401 asks for a (new) key and tries again. */
export async function request(path, options = {}) {
  for (;;) {
    const headers = new Headers(options.headers || {});
    const key = sessionStorage.getItem(KEY);
    if (key) headers.set("Authorization", `Bearer ${key}`);
    const response = await fetch(path, { ...options, headers });
    if (response.status !== 401) return response;
    await askKey(key ? "That API key was refused. Enter another one." : "This service needs an API key.");
  }
}

async function detailOf(response) {
  try {
    const body = await response.json();
    return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

/** The JSON body of a successful call, else ApiError(status, detail). */
export async function getJSON(path, options = {}) {
  const response = await request(path, options);
  if (!response.ok) throw new ApiError(response.status, await detailOf(response));
  return response.json();
}

export function postJSON(path, body, options = {}) {
  return getJSON(path, { ...options, method: "POST", headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body) });
}

/** Upload a File as the raw body; returns the artifact (id, media_type, size, url). */
export function upload(file, signal) {
  return getJSON(`/v1/artifacts?filename=${encodeURIComponent(file.name)}`,
    { method: "POST", body: file, signal, headers: { "Content-Type": "application/octet-stream" } });
}

/** An artifact's bytes as a Blob (an <img src> could not send the key). */
export async function artifactBlob(id, signal) {
  const response = await request(`/v1/artifacts/${encodeURIComponent(id)}`, { signal });
  if (!response.ok) throw new ApiError(response.status, await detailOf(response));
  return response.blob();
}

/** Read a text/event-stream, calling onEvent(name, data) for each event, until it ends or `signal` aborts. */
export async function readEvents(path, onEvent, signal) {
  const response = await request(path, { signal, headers: { Accept: "text/event-stream" } });
  if (!response.ok) throw new ApiError(response.status, await detailOf(response));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) onEvent(name, JSON.parse(data));
    }
  }
}

/** True for the error an aborted fetch raises when the user leaves a view. */
export const isAbort = (err) => err?.name === "AbortError";
