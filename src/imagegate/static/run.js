// Sending a request from the page: one at a time (every Try is billed), its own clock, the
// real task states while polling, and a way out (Cancel, or an overall deadline).

import { STATES } from "./family.js";
import { events, shown } from "./stream.js";

const $ = (id) => document.getElementById(id);
export const POLL_DEADLINE_MS = 20 * 60 * 1000;  // gpt-image-2 at 4K can take 8 minutes
const MAX_POLL_FAILURES = 8;
const TRANSIENT = [0, 429, 500, 502, 503, 504];

let current = null;
let editResult = null;  // set by the page: what an image's Edit button does

export function onEditResult(handler) { editResult = handler; }

export const busy = () => current !== null;

export async function api(path, options = {}) {
  const headers = { authorization: `Bearer ${$("token").value.trim()}`, ...(options.headers || {}) };
  // a FormData body (an edit with files) gets its multipart type and boundary from fetch
  if (options.body && !(options.body instanceof FormData)) headers["content-type"] = "application/json";
  const response = await fetch(path, { ...options, headers });
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  return { ok: response.ok, status: response.status, body,
           charged: response.headers.get("x-credits-charged") };
}

export function errorText(result) {
  const err = result.body && result.body.error;
  if (err) return `${err.code}: ${err.message}`;
  return result.status ? `HTTP ${result.status}` : `network error: ${result.network || "no answer"}`;
}

// The status element is a polite live region: it only ever receives state changes. The
// ticking seconds go to #elapsed, which is aria-hidden, so a screen reader is not flooded.
function say(text, state) {
  const el = $("status");
  if (el.textContent !== text) el.textContent = text;
  el.dataset.state = state || "";
}

export function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

class Run {
  constructor() {
    this.controller = new AbortController();
    this.started = performance.now();
    this.cancelled = false;
    this.taskId = null;
    this.timer = setInterval(() => this.tick(), 200);
    this.tick();
  }

  seconds() { return (performance.now() - this.started) / 1000; }

  tick() { $("elapsed").textContent = `${this.seconds().toFixed(1)} s`; }

  stop() {
    clearInterval(this.timer);
    $("elapsed").textContent = "";
    return this.seconds().toFixed(1);
  }

  sleep(ms) {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.controller.signal.addEventListener("abort", () => { clearTimeout(t); resolve(); },
                                              { once: true });
    });
  }
}

function setBusy(on) {
  // aria-disabled, not disabled: a focused Try keeps its focus while the request runs
  $("try").setAttribute("aria-disabled", String(on));
  $("cancel").hidden = !on;
  $("form").setAttribute("aria-busy", String(on));
}

// On a phone the result is below the form; bring it (or the error) into view and give it
// focus so keyboard and screen reader users land on what just arrived.
function reveal() {
  const title = $("result-title");
  title.focus({ preventScroll: true });
  const box = $("result").getBoundingClientRect();
  if (box.top < 0 || box.top > window.innerHeight * 0.6) $("result").scrollIntoView({ block: "start" });
}

function extension(item, format) {
  if (!item.url) return format || "png";
  const name = new URL(item.url, window.location.href).pathname.split("/").pop();
  return name.includes(".") ? name.split(".").pop().toLowerCase() : "png";
}

function showImages(items, format) {
  $("result-empty").hidden = true;
  $("images").replaceChildren(...(items || []).map((item, i) => {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    const ext = extension(item, format);
    img.src = item.url || `data:image/${ext};base64,${item.b64_json}`;
    img.alt = item.revised_prompt || `image ${i + 1}`;
    const cap = document.createElement("figcaption");
    const info = document.createElement("span");
    info.className = "info";
    info.textContent = ext.toUpperCase();
    img.addEventListener("load", () => {
      info.textContent = `${img.naturalWidth}×${img.naturalHeight} · ${ext.toUpperCase()}`;
    });
    const link = document.createElement("a");
    link.href = img.src;
    link.download = `imagegate-${i + 1}.${ext}`;
    link.textContent = "Download";
    link.setAttribute("aria-label", `Download image ${i + 1}`);
    cap.append(info, link);
    if (item.url && editResult) {
      const edit = document.createElement("button");
      edit.type = "button";
      edit.className = "ghost edit";
      edit.textContent = "Edit";
      edit.setAttribute("aria-label", `Edit image ${i + 1}`);
      edit.addEventListener("click", () => editResult(item.url));
      cap.append(edit);
    }
    fig.append(img, cap);
    return fig;
  }));
}

// A partial image of a streamed answer: shown after the images already completed, until
// its image completes.
function showPartial(items, data, format) {
  showImages(items, format);
  const fig = document.createElement("figure");
  fig.className = "partial";
  const img = document.createElement("img");
  img.src = `data:image/${data.output_format || format || "png"};base64,${data.b64_json}`;
  img.alt = `partial image ${data.partial_image_index + 1}`;
  const cap = document.createElement("figcaption");
  cap.textContent = `partial image ${data.partial_image_index + 1} · ${data.size}`;
  fig.append(img, cap);
  $("images").append(fig);
}

async function streamed(run, target, body) {
  const headers = { authorization: `Bearer ${$("token").value.trim()}` };
  if (!(target.body instanceof FormData)) headers["content-type"] = "application/json";
  const response = await fetch(target.path, { method: "POST", body: target.body, headers,
                                              signal: run.controller.signal });
  if (!response.ok) {
    let answer = null;
    try { answer = await response.json(); } catch { answer = null; }
    $("raw").textContent = JSON.stringify(answer, null, 2);
    return finish(run, `failed (HTTP ${response.status})`, "failed",
                  errorText({ status: response.status, body: answer }));
  }
  run.taskId = response.headers.get("x-task-id");
  const items = [];
  const log = [];
  let partials = 0;
  for await (const [name, data] of events(response)) {
    if (run.cancelled) return;
    log.push(shown(name, data));
    $("raw").textContent = JSON.stringify(log, null, 2);
    if (name === "error") {
      return finish(run, `failed after ${run.seconds().toFixed(1)} s (nothing charged)`,
                    "failed", errorText({ body: data }));
    }
    if (name.endsWith(".partial_image")) {
      partials += 1;
      showPartial(items, data, body.output_format);
      say(`partial image ${data.partial_image_index + 1} at ${run.seconds().toFixed(1)} s`, "running");
    } else if (name.endsWith(".completed")) {
      items.push({ url: data.url, b64_json: data.b64_json, revised_prompt: data.revised_prompt });
      showImages(items, body.output_format);
      say(`image ${items.length} completed at ${run.seconds().toFixed(1)} s`, "running");
    }
  }
  const charged = response.headers.get("x-credits-charged");
  finish(run, `done in ${run.seconds().toFixed(1)} s · ${partials} partial images` +
         (charged ? ` · ${charged} credits charged` : ""), "succeeded");
}

function finish(run, text, state, error) {
  run.stop();
  say(text, state);
  if (error) showError(error);
  reveal();
}

async function poll(run, body) {
  const id = run.taskId;
  const short = id.slice(0, 8);
  const deadline = run.started + POLL_DEADLINE_MS;
  let state = "submitted";
  let failures = 0;
  let delay = 300;
  say(`task ${short} submitted`, state);
  for (;;) {
    await run.sleep(delay);
    if (run.cancelled) return;
    if (performance.now() > deadline) {
      const minutes = Math.round(POLL_DEADLINE_MS / 60000);
      return finish(run, `gave up: task ${short} is still ${state}`, "timeout",
        `timeout: task ${id} was still ${state} after ${minutes} minutes; it may yet finish ` +
        `— query it with POST /openai/tasks {"action": "retrieve", "id": "${id}"}`);
    }
    let result;
    try {
      result = await api("/openai/tasks", { method: "POST", signal: run.controller.signal,
        body: JSON.stringify({ action: "retrieve", id }) });
    } catch (e) {
      if (run.cancelled) return;
      result = { ok: false, status: 0, body: null, network: e.message };
    }
    if (!result.ok) {
      failures += 1;
      if (TRANSIENT.includes(result.status) && failures < MAX_POLL_FAILURES) {
        say(`task ${short} ${state}; retrying (${errorText(result)})`, state);
        delay = Math.min(delay * 2, 10000);
        continue;
      }
      return finish(run, `could not poll task ${short}`, "failed", errorText(result));
    }
    failures = 0;
    delay = 1000;
    const task = result.body;
    $("raw").textContent = JSON.stringify(task, null, 2);
    if (!task || typeof task !== "object" || !("status" in task)) {
      return finish(run, `task ${short} not found`, "failed",
        `not_found: the gateway has no task ${id} (it answered ${JSON.stringify(task)})`);
    }
    if (!STATES.includes(task.status)) {
      return finish(run, `task ${short}: unexpected state`, "failed",
        `unexpected_status: task ${id} is ${JSON.stringify(task.status)}; expected one of ${STATES.join(", ")}`);
    }
    state = task.status;
    if (state === "succeeded") {
      showImages((task.response || {}).data, body.output_format);
      return finish(run, `task ${short} succeeded in ${run.seconds().toFixed(1)} s`, state);
    }
    if (state === "failed") {
      return finish(run, `task ${short} failed`, state, errorText({ body: task.response || {} }));
    }
    say(`task ${short} ${state}`, state);
  }
}

// ``request``: where and what to send ({path, body}); a generation's JSON by default.
export async function start(body, request = null) {
  if (current) return;  // Ctrl+Enter while waiting must not send (and bill) a second request
  const target = request || { path: "/openai/images/generations", body: JSON.stringify(body) };
  const run = new Run();
  current = run;
  setBusy(true);
  showError("");
  $("result-empty").hidden = true;
  $("images").replaceChildren();
  $("raw").textContent = "(waiting for the answer)";
  say("waiting for the gateway…", "waiting");
  try {
    if (body.stream) {
      await streamed(run, target, body);
      return;
    }
    const result = await api(target.path, { method: "POST", signal: run.controller.signal,
      body: target.body });
    if (run.cancelled) return;
    $("raw").textContent = JSON.stringify(result.body, null, 2);
    if (!result.ok) {
      finish(run, `failed (HTTP ${result.status})`, "failed", errorText(result));
    } else if (result.body && result.body.task_id && !result.body.data) {
      run.taskId = result.body.task_id;
      await poll(run, body);
    } else {
      showImages(result.body.data, body.output_format);
      const charged = result.charged ? ` · ${result.charged} credits charged` : "";
      finish(run, `done in ${run.seconds().toFixed(1)} s${charged}`, "succeeded");
    }
  } catch (e) {
    if (!run.cancelled) finish(run, "failed: network error", "failed", `network error: ${e.message}`);
  } finally {
    run.stop();
    if (current === run) {
      current = null;
      setBusy(false);
    }
  }
}

export function cancel() {
  const run = current;
  if (!run) return;
  run.cancelled = true;
  run.controller.abort();
  const seconds = run.stop();
  current = null;
  setBusy(false);
  say(run.taskId
    ? `cancelled after ${seconds} s; task ${run.taskId.slice(0, 8)} continues on the gateway`
    : `cancelled after ${seconds} s; the gateway may still finish (and charge) the request`,
  "cancelled");
  $("raw").textContent = run.taskId ? `task ${run.taskId}` : "";
  $("try").focus();
}
