// Edit mode: the images to edit (chosen, dropped, or given as URLs) and the optional mask,
// and the request they make: multipart as the OpenAI SDKs send it when there is a file,
// JSON with image URLs when there is none.

const $ = (id) => document.getElementById(id);
export const MAX_IMAGES = 16;

const files = [];  // File objects, in the order they were added
let changed = () => {};

function urls() {
  return $("urls").value.split("\n").map((u) => u.trim()).filter(Boolean);
}

function mask() {
  const input = $("mask");
  return !input.disabled && input.files && input.files.length ? input.files[0] : null;
}

function showChosen() {
  $("chosen").replaceChildren(...files.map((file, i) => {
    const item = document.createElement("li");
    const img = document.createElement("img");
    img.src = URL.createObjectURL(file);
    img.alt = "";
    img.addEventListener("load", () => URL.revokeObjectURL(img.src), { once: true });
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "ghost";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Remove ${file.name}`);
    remove.addEventListener("click", () => {
      files.splice(i, 1);
      showChosen();
      changed();
    });
    item.append(img, file.name, remove);
    return item;
  }));
}

export function addFiles(list) {
  for (const file of list) files.push(file);  // more than 16: problem() says so at Try
  showChosen();
  changed();
}

export function addUrl(url) {
  const text = $("urls").value.trim();
  $("urls").value = text ? `${text}\n${url}` : url;
  changed();
}

// What the snippets need to know: file names (the code opens them), URLs, the mask's name.
export function describe() {
  const m = mask();
  return { files: files.map((f) => f.name), urls: urls(), mask: m ? m.name : null };
}

export function problem() {
  const count = files.length + urls().length;
  if (count === 0) return "bad_request: add an image to edit (choose, drop, or give a URL)";
  if (count > MAX_IMAGES) return `bad_request: at most ${MAX_IMAGES} images; got ${count}`;
  return "";
}

export function request(body) {
  const m = mask();
  if (!files.length && !m) {
    const list = urls();
    return { path: "/openai/images/edits",
             body: JSON.stringify({ ...body, image: list.length === 1 ? list[0] : list }) };
  }
  const form = new FormData();
  for (const [key, value] of Object.entries(body)) form.append(key, String(value));
  for (const url of urls()) form.append("image[]", url);  // URLs first, as the snippets send
  for (const file of files) form.append("image[]", file, file.name);
  if (m) form.append("mask", m, m.name);
  return { path: "/openai/images/edits", body: form };
}

export function initEdit(onChange) {
  changed = onChange;
  const drop = $("drop");
  drop.addEventListener("click", () => $("files").click());
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("files").click(); }
  });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    addFiles(e.dataTransfer.files);
  });
  $("files").addEventListener("change", () => {
    addFiles($("files").files);
    $("files").value = "";
  });
  $("urls").addEventListener("input", () => changed());
  $("mask").addEventListener("change", () => changed());
}
