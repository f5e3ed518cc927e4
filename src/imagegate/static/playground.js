// imagegate playground: the form mirrors the gateway's per-family rules (core/params.py).
"use strict";

const FAMILY = {
  "dalle": { quality: ["standard", "hd"], style: true, nMax: 1,
             sizes: ["1024x1024", "1792x1024", "1024x1792"] },
  "gpt-image": { quality: ["auto", "low", "medium", "high"], background: true, outputFormat: true,
                 compression: true, moderation: true, nMax: 10,
                 sizes: ["auto", "1024x1024", "1536x1024", "1024x1536"] },
  "nano-banana": { outputFormat: true, compression: true, nMax: 10,
                   sizes: ["1024x1024", "1792x1024", "1024x1792", "1536x1024", "1024x1536",
                           "2048x2048", "512x512"] },
};
const GPT_IMAGE_2_EXTRA = ["2048x2048", "2048x1152", "3840x2160", "2160x3840", "custom"];
const $ = (id) => document.getElementById(id);
const origin = window.location.origin;
let models = [];
let lang = "python";
let timer = null;

function family() {
  const m = models.find((x) => x.id === $("model").value);
  return m ? m.family : "dalle";
}

function setOptions(select, values, keep) {
  const previous = keep ? select.value : null;
  select.replaceChildren(...values.map((v) => new Option(v === "" ? "default" : v, v)));
  if (previous !== null && values.includes(previous)) select.value = previous;
}

function enable(param, on) {
  const box = document.querySelector(`[data-param="${param}"]`);
  box.classList.toggle("off", !on);
  box.querySelectorAll("input, select").forEach((el) => { el.disabled = !on; });
  box.title = on ? "" : "this model family ignores it";
}

function applyFamily() {
  const fam = FAMILY[family()];
  let sizes = fam.sizes;
  if ($("model").value === "gpt-image-2") sizes = sizes.concat(GPT_IMAGE_2_EXTRA);
  setOptions($("size"), sizes, true);
  setOptions($("quality"), fam.quality ? [""].concat(fam.quality) : [""], true);
  enable("size", true);
  enable("n", true);
  enable("response_format", true);
  enable("quality", !!fam.quality);
  enable("style", !!fam.style);
  enable("background", !!fam.background);
  enable("output_format", !!fam.outputFormat);
  enable("output_compression", !!fam.compression);
  enable("moderation", !!fam.moderation);
  $("n").max = fam.nMax;
  if (Number($("n").value) > fam.nMax) $("n").value = fam.nMax;
  $("size-custom").hidden = $("size").value !== "custom";
  render();
}

function payload() {
  const body = { model: $("model").value, prompt: $("prompt").value };
  const size = $("size").value === "custom" ? $("size-custom").value.trim() : $("size").value;
  if (size) body.size = size;
  const n = Number($("n").value);
  if (n && n !== 1) body.n = n;
  for (const name of ["quality", "style", "background", "output_format", "moderation",
                      "response_format"]) {
    const el = $(name);
    if (!el.disabled && el.value) body[name] = el.value;
  }
  const comp = $("output_compression");
  if (!comp.disabled && comp.value !== "") body.output_compression = Number(comp.value);
  if ($("async").checked) {
    const cb = $("callback_url").value.trim();
    if (cb) body.callback_url = cb; else body.async = true;
  }
  return body;
}

function pyValue(v, indent) {
  const pad = " ".repeat(indent);
  if (v === null) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (Array.isArray(v)) return `[${v.map((x) => pyValue(x, indent)).join(", ")}]`;
  if (typeof v === "object") {
    const rows = Object.entries(v).map(([k, x]) => `${pad}    ${JSON.stringify(k)}: ${pyValue(x, indent + 4)},`);
    return `{\n${rows.join("\n")}\n${pad}}`;
  }
  return JSON.stringify(v);
}

const SDK_PARAMS = ["model", "prompt", "n", "size", "quality", "style", "response_format",
                    "background", "output_format", "output_compression", "moderation"];

function code(which, token) {
  const body = payload();
  const url = `${origin}/openai/images/generations`;
  if (which === "python") {
    return `import requests\n\nurl = "${url}"\nheaders = {\n    "accept": "application/json",\n` +
      `    "authorization": "Bearer ${token}",\n    "content-type": "application/json",\n}\n` +
      `payload = ${pyValue(body, 0)}\n\nresponse = requests.post(url, json=payload, headers=headers)\n` +
      `print(response.text)\n`;
  }
  if (which === "openai") {
    const args = SDK_PARAMS.filter((k) => k in body).map((k) => `    ${k}=${pyValue(body[k], 4)},`);
    const extra = Object.fromEntries(Object.entries(body).filter(([k]) => !SDK_PARAMS.includes(k)));
    if (Object.keys(extra).length) args.push(`    extra_body=${pyValue(extra, 4)},`);
    const show = body.async || body.callback_url ? "print(result)"
      : `for image in result.data:\n    print(image.url or image.b64_json[:60] + "...")`;
    return `from openai import OpenAI\n\nclient = OpenAI(base_url="${origin}/v1", api_key="${token}")\n` +
      `result = client.images.generate(\n${args.join("\n")}\n)\n${show}\n`;
  }
  const json = JSON.stringify(body, null, 2);
  if (which === "curl") {
    return `curl -X POST '${url}' \\\n  -H 'authorization: Bearer ${token}' \\\n` +
      `  -H 'content-type: application/json' \\\n  -d '${json.replace(/'/g, "'\\''")}'\n`;
  }
  return `const response = await fetch("${url}", {\n  method: "POST",\n  headers: {\n` +
    `    "authorization": "Bearer ${token}",\n    "content-type": "application/json",\n  },\n` +
    `  body: JSON.stringify(${json.replace(/\n/g, "\n  ")}),\n});\nconsole.log(await response.json());\n`;
}

function render() {
  const token = $("with-token").checked && $("token").value ? $("token").value : "{token}";
  $("code").firstElementChild.textContent = code(lang, token);
}

async function api(path, options = {}) {
  const headers = { authorization: `Bearer ${$("token").value.trim()}`, ...(options.headers || {}) };
  if (options.body) headers["content-type"] = "application/json";
  const response = await fetch(path, { ...options, headers });
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  return { ok: response.ok, status: response.status, body };
}

function errorText(result) {
  const err = result.body && result.body.error;
  return err ? `${err.code}: ${err.message}` : `HTTP ${result.status}`;
}

async function loadModels() {
  const help = $("model-help");
  if (!$("token").value.trim()) {
    help.textContent = "Enter your token to load the models.";
    return;
  }
  const result = await api("/v1/models");
  if (!result.ok) {
    help.textContent = `Could not load models: ${errorText(result)}`;
    return;
  }
  const keep = $("model").value;
  models = result.body.data;
  $("model").replaceChildren(...models.map((m) => {
    const label = `${m.id} — ${m.price} credits${m.available ? "" : " (unavailable)"}`;
    return new Option(label, m.id);
  }));
  if (models.some((m) => m.id === keep)) $("model").value = keep;
  help.textContent = `${models.length} models; price per image.`;
  applyFamily();
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

function startClock(label) {
  const started = performance.now();
  clearInterval(timer);
  const tick = () => {
    $("status").textContent = `${label} ${((performance.now() - started) / 1000).toFixed(1)} s`;
  };
  tick();
  timer = setInterval(tick, 100);
  return () => { clearInterval(timer); return (performance.now() - started) / 1000; };
}

function showImages(items, format) {
  $("images").replaceChildren(...(items || []).map((item, i) => {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    const ext = item.url ? item.url.split(".").pop() : (format || "png");
    img.src = item.url || `data:image/${ext};base64,${item.b64_json}`;
    img.alt = item.revised_prompt || `image ${i + 1}`;
    const cap = document.createElement("figcaption");
    const info = document.createElement("span");
    info.className = "info";
    info.textContent = `${ext.toUpperCase()}`;
    img.addEventListener("load", () => {
      info.textContent = `${img.naturalWidth}×${img.naturalHeight} · ${ext.toUpperCase()}`;
    });
    const link = document.createElement("a");
    link.href = img.src;
    link.download = `imagegate-${i + 1}.${ext}`;
    link.textContent = "Download";
    cap.append(info, link);
    fig.append(img, cap);
    return fig;
  }));
}

async function poll(taskId, body, stop) {
  for (;;) {
    await new Promise((r) => setTimeout(r, 1000));
    const result = await api("/openai/tasks", { method: "POST",
      body: JSON.stringify({ action: "retrieve", id: taskId }) });
    if (!result.ok) { stop(); showError(errorText(result)); return; }
    const task = result.body;
    $("raw").textContent = JSON.stringify(task, null, 2);
    if (task.status === "succeeded" || task.status === "failed") {
      const seconds = stop();
      $("status").textContent = `task ${task.status} after ${seconds.toFixed(1)} s`;
      if (task.status === "failed") showError(errorText({ body: task.response || {} }));
      else showImages(task.response.data, body.output_format);
      return;
    }
    $("status").dataset.state = task.status;
  }
}

async function tryIt(event) {
  event.preventDefault();
  showError("");
  $("images").replaceChildren();
  const body = payload();
  const button = $("try");
  button.disabled = true;
  const stop = startClock("waiting…");
  try {
    const result = await api("/openai/images/generations", { method: "POST", body: JSON.stringify(body) });
    $("raw").textContent = JSON.stringify(result.body, null, 2);
    if (!result.ok) {
      stop();
      $("status").textContent = `failed (HTTP ${result.status})`;
      showError(errorText(result));
      return;
    }
    if (result.body.task_id && !result.body.data) {
      clearInterval(timer);
      const pollStop = startClock(`task ${result.body.task_id.slice(0, 8)} running…`);
      await poll(result.body.task_id, body, pollStop);
      return;
    }
    const seconds = stop();
    $("status").textContent = `done in ${seconds.toFixed(1)} s`;
    showImages(result.body.data, body.output_format);
  } catch (e) {
    stop();
    showError(`network error: ${e.message}`);
  } finally {
    button.disabled = false;
  }
}

function init() {
  $("token").value = localStorage.getItem("imagegate.token") || "";
  $("token").addEventListener("change", () => {
    localStorage.setItem("imagegate.token", $("token").value.trim());
    loadModels();
    render();
  });
  $("token-show").addEventListener("click", (e) => {
    const shown = $("token").type === "text";
    $("token").type = shown ? "password" : "text";
    e.target.setAttribute("aria-pressed", String(!shown));
    e.target.textContent = shown ? "Show" : "Hide";
  });
  $("model").addEventListener("change", applyFamily);
  $("size").addEventListener("change", () => { $("size-custom").hidden = $("size").value !== "custom"; render(); });
  $("async").addEventListener("change", () => { $("callback_url").disabled = !$("async").checked; render(); });
  $("form").addEventListener("input", render);
  $("form").addEventListener("change", render);
  $("form").addEventListener("submit", tryIt);
  $("form").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("form").requestSubmit();
  });
  $("with-token").addEventListener("change", render);
  document.querySelectorAll("[role=tab]").forEach((tab) => tab.addEventListener("click", () => {
    document.querySelectorAll("[role=tab]").forEach((t) => t.setAttribute("aria-selected", "false"));
    tab.setAttribute("aria-selected", "true");
    lang = tab.dataset.lang;
    render();
  }));
  $("copy").addEventListener("click", async () => {
    const text = $("code").textContent;
    try { await navigator.clipboard.writeText(text); $("copy").textContent = "Copied"; }
    catch { $("copy").textContent = "Select and copy"; }
    setTimeout(() => { $("copy").textContent = "Copy"; }, 1500);
  });
  // before the models load, show the seed's default model so the code panel is useful
  models = [{ id: "dall-e-3", family: "dalle", price: 0 }];
  $("model").replaceChildren(new Option("dall-e-3", "dall-e-3"));
  applyFamily();
  loadModels();
}

init();
