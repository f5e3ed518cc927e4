// imagegate playground: the form, the models, the code panel. Plain ES modules, no build step.
import { CUSTOM, PARAMS, costText, familyOf, priceRange, sizesOf } from "./family.js";
import { code } from "./snippets.js";
import { api, busy, cancel, errorText, onEditResult, showError, start } from "./run.js";
import { addUrl, describe, initEdit, problem, request } from "./edit.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "imagegate.token";
const SIZE = /^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$/;
let models = [];
let lang = "python";

const editing = () => $("mode-edit").checked;

function currentModel() {
  return models.find((m) => m.id === $("model").value) || models[0];
}

function setOptions(select, pairs) {
  const previous = select.value;
  select.replaceChildren(...pairs.map(([value, label]) => new Option(label, value)));
  if (pairs.some(([value]) => value === previous)) select.value = previous;
}

function enable(param, on) {
  const box = document.querySelector(`[data-param="${param}"]`);
  box.classList.toggle("off", !on);
  box.querySelectorAll("input, select").forEach((el) => { el.disabled = !on; });
  box.title = on ? "" : ({ callback_url: "tick Asynchronous first",
                           mask: "nano-banana models take no mask",
                           stream: "dall-e-3 does not stream" }[param]
                         || "this model family ignores it");
}

function applyFamily() {
  const model = currentModel();
  const fam = familyOf(model);
  setOptions($("size"), sizesOf(model).map(([v, note]) => [v, note && v !== "custom" ? `${v} (${note})` : note || v]));
  const quality = fam.quality.length ? [["", `default (${fam.defaults.quality})`]] : [["", "default"]];
  setOptions($("quality"), quality.concat(fam.quality.map((q) => [q, q])));
  for (const param of PARAMS) enable(param, fam.fields.includes(param));
  refuse(model);
  enable("mask", fam !== familyOf({ family: "nano-banana" }));  // Gemini takes no mask
  enable("stream", fam !== familyOf({ family: "dalle" }));  // dall-e-3 does not stream
  $("n").max = String(fam.nMax);
  if (Number($("n").value) > fam.nMax) $("n").value = String(fam.nMax);
  showCustomSize();
  render();
}

// Values every channel of the model refuses (GET /v1/models `unsupported`): a 400 if sent.
function refuse(model) {
  const refused = (model && model.unsupported) || {};
  for (const param of PARAMS) {
    const select = $(param);
    if (!select || select.tagName !== "SELECT") continue;
    for (const option of select.options) {
      const no = option.value !== "" && (refused[param] || []).includes(option.value);
      option.disabled = no;
      option.title = no ? `${model.id} does not accept ${param} ${option.value}` : "";
    }
    if (select.selectedOptions[0] && select.selectedOptions[0].disabled) select.value = "";
  }
}

function showCustomSize() {
  const custom = $("size").value === CUSTOM[0] && !$("size").disabled;
  $("size-custom").hidden = !custom;
  $("size-help").hidden = !custom;
  if (!custom) $("size-custom").removeAttribute("aria-invalid");
}

function payload() {
  const body = { model: $("model").value, prompt: $("prompt").value };
  for (const name of PARAMS) {
    const el = $(name);
    if (el.disabled || el.value === "") continue;
    if (name === "size") {
      const size = el.value === CUSTOM[0] ? $("size-custom").value.trim().toLowerCase() : el.value;
      if (size) body.size = size;
    } else if (name === "n" || name === "output_compression") {
      const number = Number(el.value);
      if (Number.isFinite(number) && !(name === "n" && number === 1)) body[name] = number;
    } else {
      body[name] = el.value;
    }
  }
  if ($("async").checked) {
    const cb = $("callback_url").value.trim();
    if (cb) body.callback_url = cb; else body.async = true;
  } else if ($("stream").checked && !$("stream").disabled) {
    body.stream = true;
    const partial = Number($("partial_images").value);
    if (Number.isInteger(partial) && partial > 0) body.partial_images = Math.min(partial, 3);
  }
  return body;
}

function render() {
  const token = $("with-token").checked && $("token").value.trim() ? $("token").value.trim() : "{token}";
  const body = payload();
  const edit = editing() ? describe() : null;
  $("code").firstElementChild.textContent = code(lang, body, window.location.origin, token, edit);
  const model = currentModel();
  $("cost").textContent = model && model.price != null
    ? costText(model, body, edit ? "edits" : "generations") : "";
}

function setMode() {
  $("edit-inputs").hidden = !editing();
  $("try").textContent = editing() ? "Try the edit" : "Try";
  render();
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
    const label = `${m.id} — ${priceRange(m)} credits/image${m.available ? "" : " (unavailable)"}`;
    return new Option(label, m.id);
  }));
  if (models.some((m) => m.id === keep)) $("model").value = keep;
  help.textContent = `${models.length} models; the cost below follows the form.`;
  applyFamily();
}

function submit(event) {
  event.preventDefault();
  if (busy()) return;
  const custom = $("size-custom");
  if (!custom.hidden && !SIZE.test(custom.value.trim().toLowerCase())) {
    custom.setAttribute("aria-invalid", "true");
    showError("bad_request: size must be WxH, e.g. 2048x1152");
    custom.focus();
    return;
  }
  custom.removeAttribute("aria-invalid");
  if (!editing()) {
    start(payload());
    return;
  }
  const wrong = problem();
  if (wrong) {
    showError(wrong);
    $("drop").focus();
    return;
  }
  start(payload(), request(payload()));
}

// an image on the page (a result) becomes the input of an edit
function editThis(url) {
  $("mode-edit").checked = true;
  addUrl(url);
  setMode();
  $("urls").focus();
}

function selectTab(tab, focus) {
  const tabs = [...document.querySelectorAll("[role=tab]")];
  for (const t of tabs) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
  }
  $("code").setAttribute("aria-labelledby", tab.id);
  lang = tab.dataset.lang;
  if (focus) tab.focus();
  render();
}

function tabKeys(event) {
  const tabs = [...document.querySelectorAll("[role=tab]")];
  const i = tabs.indexOf(event.target);
  const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[event.key];
  if (i < 0 || next === undefined) return;
  event.preventDefault();
  selectTab(tabs[(next + tabs.length) % tabs.length], true);
}

async function copyCode() {
  const text = $("code").textContent;
  let said = "Copied";
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    window.getSelection().selectAllChildren($("code"));
    said = "Selected: press Ctrl+C to copy";
  }
  $("copy-status").textContent = said;
  setTimeout(() => { $("copy-status").textContent = ""; }, 2500);
}

function init() {
  $("token").value = localStorage.getItem(TOKEN_KEY) || "";
  $("token").addEventListener("change", () => {
    localStorage.setItem(TOKEN_KEY, $("token").value.trim());
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
  $("size").addEventListener("change", showCustomSize);
  $("async").addEventListener("change", () => {
    enable("callback_url", $("async").checked);
    if ($("async").checked) $("stream").checked = false;  // a stream answers on the spot
  });
  $("stream").addEventListener("change", () => {
    if (!$("stream").checked) return;
    $("async").checked = false;
    enable("callback_url", false);
  });
  $("form").addEventListener("input", render);
  $("form").addEventListener("change", render);
  $("form").addEventListener("submit", submit);
  $("cancel").addEventListener("click", cancel);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); $("form").requestSubmit(); }
  });
  $("with-token").addEventListener("change", render);
  document.querySelectorAll("[role=tab]").forEach((tab) => {
    tab.addEventListener("click", () => selectTab(tab, false));
    tab.addEventListener("keydown", tabKeys);
  });
  $("copy").addEventListener("click", copyCode);
  document.querySelectorAll("input[name=mode]").forEach((el) => el.addEventListener("change", setMode));
  initEdit(render);
  onEditResult(editThis);
  // before the models load, show the seed's default model so the code panel is useful
  models = [{ id: "dall-e-3", family: "dalle", price: null, price_tiers: [] }];
  $("model").replaceChildren(new Option("dall-e-3", "dall-e-3"));
  applyFamily();
  setMode();  // a reload may bring the radio back checked on Edit
  loadModels();
}

init();
