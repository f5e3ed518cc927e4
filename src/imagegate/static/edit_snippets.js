// Code for an edit, in the same four languages: the multipart form (as the OpenAI SDKs send
// it) when there are files, the JSON form (image URLs) when there are none. Files are opened
// by name, so the code runs beside them. tests/test_playground_edits.py runs every one.

import {
  curlTail, isAsync, isStream, jsTail, openaiImports, openaiTail, pyValue, pythonImports,
  pythonTail, shell,
} from "./snippets.js";

// what the SDK's images.edit takes as arguments; the rest goes in extra_body
const SDK_EDIT = ["model", "prompt", "n", "size", "quality", "response_format", "background",
                  "output_format", "output_compression", "input_fidelity", "user", "stream",
                  "partial_images"];
const MIME = { png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", webp: "image/webp" };

const multipart = (edit) => edit.files.length > 0 || Boolean(edit.mask);
const text = (body) => Object.fromEntries(Object.entries(body).map(([k, v]) => [k, String(v)]));
const mimeOf = (name) => MIME[name.split(".").pop().toLowerCase()] || "application/octet-stream";

function jsonBody(body, edit) {
  return { ...body, image: edit.urls.length === 1 ? edit.urls[0] : edit.urls };
}

function python(body, origin, token, edit) {
  let head = `${pythonImports(body)}import requests\n\n` +
    `url = "${origin}/openai/images/edits"\n` +
    `headers = {"authorization": "Bearer ${token}"}\n`;
  if (!multipart(edit)) {
    head += `payload = ${pyValue(jsonBody(body, edit), 0)}\n\n` +
      `response = requests.post(url, json=payload, headers=headers` +
      `${isStream(body) ? ", stream=True" : ""})\n`;
    return head + pythonTail(body, origin);
  }
  const fields = text(body);
  if (edit.urls.length) fields["image[]"] = edit.urls;  // URLs as text fields, before the files
  const files = [...edit.files.map((name) => `    ("image[]", open(${JSON.stringify(name)}, "rb")),`),
                 ...(edit.mask ? [`    ("mask", open(${JSON.stringify(edit.mask)}, "rb")),`] : [])];
  head += `data = ${pyValue(fields, 0)}  # every field is text in a multipart form\n` +
    `files = [\n${files.join("\n")}\n]\n\n` +
    `response = requests.post(url, headers=headers, data=data, files=files` +
    `${isStream(body) ? ", stream=True" : ""})\n`;
  return head + pythonTail(body, origin);
}

function openai(body, origin, token, edit) {
  const stream = isStream(body);
  const types = stream
    ? "from openai import Stream\nfrom openai.types import ImageEditStreamEvent, ImagesResponse\n"
    : "from openai.types import ImagesResponse\n";
  const head = `${openaiImports(body)}from openai import OpenAI\n` +
    (multipart(edit) ? "" : types) + "\n" +
    `client = OpenAI(base_url="${origin}/v1", api_key="${token}")\n`;
  if (!multipart(edit)) {
    // images.edit uploads files; image URLs go as JSON through the client's own post
    const how = stream ? "stream=True, stream_cls=Stream[ImageEditStreamEvent], " : "";
    return head + `result = client.post("/images/edits", cast_to=ImagesResponse, ${how}body=` +
      `${pyValue(jsonBody(body, edit), 0)})\n` + openaiTail(body, origin);
  }
  const opened = edit.files.map((name) => `open(${JSON.stringify(name)}, "rb")`);
  const args = [`    image=${opened.length === 1 ? opened[0] : `[${opened.join(", ")}]`},`];
  if (edit.mask) args.push(`    mask=open(${JSON.stringify(edit.mask)}, "rb"),`);
  for (const key of SDK_EDIT.filter((k) => k in body)) {
    args.push(`    ${key}=${pyValue(body[key], 4)},`);
  }
  const extra = Object.fromEntries(Object.entries(body).filter(([k]) => !SDK_EDIT.includes(k)));
  if (edit.urls.length) extra.image = edit.urls;  // URLs as text image[] fields
  if (Object.keys(extra).length) args.push(`    extra_body=${pyValue(extra, 4)},`);
  return head + `result = client.images.edit(\n${args.join("\n")}\n)\n` + openaiTail(body, origin);
}

function curl(body, origin, token, edit) {
  const start = `curl -sS -X POST '${origin}/openai/images/edits' \\\n` +
    `  -H 'authorization: Bearer ${token}' \\\n`;
  if (!multipart(edit)) {
    const post = start + `  -H 'content-type: application/json' \\\n` +
      `  -d ${shell(JSON.stringify(jsonBody(body, edit), null, 2))}`;
    return curlTail(body, post, origin, token);
  }
  const parts = [
    ...Object.entries(text(body)).map(([k, v]) => `--form-string ${shell(`${k}=${v}`)}`),
    ...edit.urls.map((url) => `--form-string ${shell(`image[]=${url}`)}`),
    ...edit.files.map((name) => `-F ${shell(`image[]=@${name}`)}`),
    ...(edit.mask ? [`-F ${shell(`mask=@${edit.mask}`)}`] : []),
  ];
  return curlTail(body, start + parts.map((p) => `  ${p}`).join(" \\\n"), origin, token);
}

function js(body, origin, token, edit) {
  let head = `const headers = {\n  "authorization": "Bearer ${token}",\n` +
    `  "content-type": "application/json",\n};\n`;
  if (!multipart(edit)) {
    const json = JSON.stringify(jsonBody(body, edit), null, 2).replace(/\n/g, "\n  ");
    head += `const response = await fetch("${origin}/openai/images/edits", {\n` +
      `  method: "POST",\n  headers,\n  body: JSON.stringify(${json}),\n});\n`;
    return head + jsTail(body, origin);
  }
  const fields = JSON.stringify(text(body), null, 2);
  head = `import { readFile } from "node:fs/promises";\n\n${head}` +
    `const form = new FormData();  // multipart, as the OpenAI SDKs send it\n` +
    `for (const [key, value] of Object.entries(${fields})) form.append(key, value);\n` +
    edit.urls.map((url) => `form.append("image[]", ${JSON.stringify(url)});\n`).join("") +
    edit.files.map((name) => `form.append("image[]", new Blob([await readFile(` +
      `${JSON.stringify(name)})], { type: "${mimeOf(name)}" }), ${JSON.stringify(name)});\n`).join("") +
    (edit.mask ? `form.append("mask", new Blob([await readFile(${JSON.stringify(edit.mask)})], ` +
      `{ type: "image/png" }), ${JSON.stringify(edit.mask)});\n` : "") +
    `const response = await fetch("${origin}/openai/images/edits", {\n` +
    `  method: "POST",\n  headers: { authorization: headers.authorization },  // fetch sets ` +
    `the multipart type\n  body: form,\n});\n`;
  return head + jsTail(body, origin);
}

export const EDIT_WRITERS = { python, openai, curl, js };
