// Code for the current form, in four languages. Every snippet is run against a real gateway
// by tests/test_playground.py, so what a user copies is known to work. Async snippets poll
// /openai/tasks until the task ends, because a bare task id is not what anyone wants.

import { EDIT_WRITERS } from "./edit_snippets.js";

export const LANGS = ["python", "openai", "curl", "js"];

const SDK_PARAMS = ["model", "prompt", "n", "size", "quality", "style", "response_format",
                    "background", "output_format", "output_compression", "moderation", "stream",
                    "partial_images"];

export function pyValue(v, indent) {
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

export const isAsync = (body) => Boolean(body.async || body.callback_url);
export const isStream = (body) => body.stream === true && !isAsync(body);
export const shell = (text) => `'${text.replace(/'/g, "'\\''")}'`;

function python(body, origin, token) {
  const head = `${pythonImports(body)}import requests\n\n` +
    `url = "${origin}/openai/images/generations"\nheaders = {\n    "accept": "application/json",\n` +
    `    "authorization": "Bearer ${token}",\n    "content-type": "application/json",\n}\n` +
    `payload = ${pyValue(body, 0)}\n\nresponse = requests.post(url, json=payload, headers=headers` +
    `${isStream(body) ? ", stream=True" : ""})\n`;
  return head + pythonTail(body, origin);
}

// after `response = requests.post(...)`: print it, or poll the task it started
export function pythonTail(body, origin) {
  if (isStream(body)) {
    return `response.raise_for_status()\nevent = ""\n` +
      `for line in response.iter_lines(decode_unicode=True):  # Server-Sent Events\n` +
      `    if line.startswith("event: "):\n        event = line[len("event: "):]\n` +
      `    elif line.startswith("data: "):\n        data = json.loads(line[len("data: "):])\n` +
      `        print(event, data.get("url") or data.get("error") or ` +
      `f"partial image {data.get('partial_image_index')}")\n`;
  }
  if (!isAsync(body)) return `print(response.text)\n`;
  return `response.raise_for_status()\ntask_id = response.json()["task_id"]\n` +
    `print("task", task_id)\n\nwhile True:  # poll until the task ends\n` +
    `    task = requests.post("${origin}/openai/tasks", headers=headers,\n` +
    `                         json={"action": "retrieve", "id": task_id}).json()\n` +
    `    if task.get("status") not in ("queued", "running"):  # {} means no such task\n` +
    `        break\n    time.sleep(2)\nprint(json.dumps(task, indent=2))\n`;
}

export function pythonImports(body) {
  if (isStream(body)) return "import json\n\n";
  return isAsync(body) ? "import json\nimport time\n\n" : "";
}

function openai(body, origin, token) {
  const args = SDK_PARAMS.filter((k) => k in body).map((k) => `    ${k}=${pyValue(body[k], 4)},`);
  const extra = Object.fromEntries(Object.entries(body).filter(([k]) => !SDK_PARAMS.includes(k)));
  if (Object.keys(extra).length) args.push(`    extra_body=${pyValue(extra, 4)},`);
  const head = `${openaiImports(body)}from openai import OpenAI\n\n` +
    `client = OpenAI(base_url="${origin}/v1", api_key="${token}")\n` +
    `result = client.images.generate(\n${args.join("\n")}\n)\n`;
  return head + openaiTail(body, origin);
}

// after `result = client.images...(...)`: print the images, or poll the task
export function openaiTail(body, origin) {
  if (isStream(body)) {
    return `for event in result:  # partial images, then each image completed\n` +
      `    print(event.type, (event.model_extra or {}).get("url") or len(event.b64_json))\n`;
  }
  if (!isAsync(body)) {
    return `for image in result.data:\n    print(image.url or image.b64_json[:60] + "...")\n`;
  }
  return `task_id = result.task_id  # imagegate answers an async request with a task id\n` +
    `print("task", task_id)\n\nwhile True:  # poll until the task ends\n` +
    `    task = httpx.post("${origin}/openai/tasks",\n` +
    `                      headers={"authorization": f"Bearer {client.api_key}"},\n` +
    `                      json={"action": "retrieve", "id": task_id}).json()\n` +
    `    if task.get("status") not in ("queued", "running"):  # {} means no such task\n` +
    `        break\n    time.sleep(2)\nprint(json.dumps(task, indent=2))\n`;
}

export function openaiImports(body) {
  return isAsync(body) ? "import json\nimport time\n\nimport httpx\n" : "";
}

function curl(body, origin, token) {
  const json = JSON.stringify(body, null, 2);
  const post = `curl -sS -X POST '${origin}/openai/images/generations' \\\n` +
    `  -H 'authorization: Bearer ${token}' \\\n  -H 'content-type: application/json' \\\n` +
    `  -d ${shell(json)}`;
  return curlTail(body, post, origin, token);
}

// ``post`` is the submitting curl command: run it, or run it and poll the task
export function curlTail(body, post, origin, token) {
  if (isStream(body)) return post.replace("curl -sS ", "curl -sS -N ") + "\n";  // -N: as it comes
  if (!isAsync(body)) return post + "\n";
  return `submitted=$(${post})\necho "$submitted"\n` +
    `task_id=$(printf '%s' "$submitted" | sed -n 's/.*"task_id": *"\\([^"]*\\)".*/\\1/p')\n` +
    `[ -n "$task_id" ] || exit 1\n\n` +
    `while :; do  # poll until the task ends\n` +
    `  task=$(curl -sS -X POST '${origin}/openai/tasks' \\\n` +
    `    -H 'authorization: Bearer ${token}' -H 'content-type: application/json' \\\n` +
    `    -d "{\\"action\\": \\"retrieve\\", \\"id\\": \\"$task_id\\"}")\n` +
    `  printf '%s' "$task" | grep -Eq '"status": ?"(queued|running)"' || break\n` +
    `  sleep 2\ndone\necho "$task"\n`;
}

function js(body, origin, token) {
  const json = JSON.stringify(body, null, 2).replace(/\n/g, "\n  ");
  const head = `const headers = {\n  "authorization": "Bearer ${token}",\n` +
    `  "content-type": "application/json",\n};\n` +
    `const response = await fetch("${origin}/openai/images/generations", {\n` +
    `  method: "POST",\n  headers,\n  body: JSON.stringify(${json}),\n});\n`;
  return head + jsTail(body, origin);
}

// after `const response = await fetch(...)` (and `headers` for JSON): print it, or poll
export function jsTail(body, origin) {
  if (isStream(body)) {
    return `if (!response.ok) throw new Error(await response.text());\n` +
      `const reader = response.body.getReader();\nconst decoder = new TextDecoder();\n` +
      `let buffer = "";\nfor (;;) {  // Server-Sent Events: "event: <type>", "data: <json>"\n` +
      `  const { done, value } = await reader.read();\n` +
      `  if (value) buffer += decoder.decode(value, { stream: true });\n  let at;\n` +
      `  while ((at = buffer.indexOf("\\n\\n")) >= 0) {\n` +
      `    const [kind, data] = buffer.slice(0, at).split("\\n");\n` +
      `    buffer = buffer.slice(at + 2);\n` +
      `    const event = JSON.parse(data.slice("data: ".length));\n` +
      `    console.log(kind.slice("event: ".length), event.url || event.error ||\n` +
      `      \`partial image \${event.partial_image_index}\`);\n  }\n  if (done) break;\n}\n`;
  }
  if (!isAsync(body)) return `console.log(JSON.stringify(await response.json(), null, 2));\n`;
  return `const submitted = await response.json();\n` +
    `if (!submitted.task_id) throw new Error(JSON.stringify(submitted));\n` +
    `console.log("task", submitted.task_id);\n\nlet task;\n` +
    `for (;;) {  // poll until the task ends\n` +
    `  const polled = await fetch("${origin}/openai/tasks", {\n    method: "POST",\n    headers,\n` +
    `    body: JSON.stringify({ action: "retrieve", id: submitted.task_id }),\n  });\n` +
    `  task = await polled.json();\n` +
    `  if (task.status !== "queued" && task.status !== "running") break;  // {}: no such task\n` +
    `  await new Promise((resolve) => setTimeout(resolve, 2000));\n}\n` +
    `console.log(JSON.stringify(task, null, 2));\n`;
}

const WRITERS = { python, openai, curl, js };

// ``edit``: the edit mode's inputs ({files, urls, mask}); null for a generation
export function code(which, body, origin, token, edit = null) {
  if (edit) return EDIT_WRITERS[which](body, origin, token, edit);
  return WRITERS[which](body, origin, token);
}
