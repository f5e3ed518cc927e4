// The API reference: renders /openapi.json with no library and nothing from elsewhere.
const ops = document.getElementById("ops");
const toc = document.getElementById("toc");

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// `code` in descriptions, the one piece of markdown they use
function prose(text) {
  return text.split("`").map((part, i) => (i % 2 ? el("code", { textContent: part }) : part));
}

function resolve(spec, schema) {
  let s = schema || {};
  while (s.$ref) s = spec.components.schemas[s.$ref.split("/").pop()] || {};
  return s;
}

function refName(schema) {
  return schema && schema.$ref ? schema.$ref.split("/").pop() : null;
}

function typeOf(spec, schema) {
  const s = resolve(spec, schema);
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (s.type === "array") return `array of ${typeOf(spec, s.items)}`;
  if (s.anyOf || s.oneOf) return (s.anyOf || s.oneOf).map((x) => refName(x) || typeOf(spec, x)).join(" or ");
  if (Array.isArray(s.type)) return s.type.join(" or ");
  return refName(schema) || s.type || "any";
}

function rules(s) {
  const out = [];
  if (s.minimum !== undefined) out.push(`≥ ${s.minimum}`);
  if (s.exclusiveMinimum !== undefined) out.push(`> ${s.exclusiveMinimum}`);
  if (s.maximum !== undefined) out.push(`≤ ${s.maximum}`);
  if (s.minLength !== undefined) out.push(`length ≥ ${s.minLength}`);
  if (s.maxLength !== undefined) out.push(`length ≤ ${s.maxLength}`);
  if (s.maxItems !== undefined) out.push(`≤ ${s.maxItems} items`);
  if (s.description) out.push(s.description);
  return out.join("; ");
}

function fields(spec, schema) {
  const s = resolve(spec, schema);
  if (s.oneOf || s.anyOf) {
    return el("div", {}, (s.oneOf || s.anyOf).map((variant) => {
      const v = resolve(spec, variant);
      return el("div", { className: "variant" },
        el("strong", { textContent: v.title || refName(variant) || "one of" }), fields(spec, variant));
    }));
  }
  if (s.allOf) return el("div", {}, s.allOf.map((part) => fields(spec, part)));
  const props = s.properties || {};
  if (!Object.keys(props).length) return el("p", { className: "muted", textContent: typeOf(spec, schema) });
  const required = new Set(s.required || []);
  const rows = Object.entries(props).map(([name, prop]) => el("tr", {},
    el("td", {}, el("code", { textContent: name }),
      required.has(name) ? el("span", { className: "req", textContent: "required" }) : null),
    el("td", {}, el("code", { textContent: typeOf(spec, prop) })),
    el("td", { textContent: rules(resolve(spec, prop)) })));
  return el("table", {}, el("tr", {}, el("th", { textContent: "field" }), el("th", { textContent: "type" }),
    el("th", { textContent: "rules" })), rows);
}

function responses(spec, answers) {
  const rows = Object.entries(answers).map(([status, answer]) => {
    const media = Object.entries(answer.content || {})[0];
    const body = media ? `${media[0]}: ${typeOf(spec, media[1].schema)}` : "no body";
    return el("tr", {}, el("td", {}, el("code", { textContent: status })),
      el("td", { textContent: answer.description || "" }), el("td", {}, el("code", { textContent: body })));
  });
  return el("table", {}, el("tr", {}, el("th", { textContent: "status" }), el("th", { textContent: "when" }),
    el("th", { textContent: "body" })), rows);
}

function render(spec) {
  const byTag = new Map();
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const tag = (op.tags || ["other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push({ path, method, op });
    }
  }
  ops.replaceChildren();
  for (const [tag, list] of byTag) {
    toc.append(el("h2", { textContent: tag }));
    for (const { path, method, op } of list) {
      const id = `${method}-${path}`.replace(/[^a-z0-9]+/gi, "-");
      toc.append(el("a", { href: `#${id}`, textContent: `${method.toUpperCase()} ${path}` }));
      const security = (op.security || []).flatMap((s) => Object.keys(s));
      const section = el("section", { className: "op", id },
        el("h3", {}, el("span", { className: `method ${method}`, textContent: method }),
          el("code", { textContent: path }), el("span", { className: "summary", textContent: op.summary || "" }),
          security.length ? el("span", { className: "auth", textContent: `bearer: ${security.join(", ")}` }) : null),
        op.description ? el("p", {}, prose(op.description)) : null);
      for (const param of op.parameters || []) {
        section.append(el("p", {}, el("code", { textContent: `{${param.name}}` }), ` in the ${param.in}`));
      }
      const body = op.requestBody && op.requestBody.content["application/json"];
      if (body) section.append(el("h4", { textContent: "request body (JSON)" }), fields(spec, body.schema));
      section.append(el("h4", { textContent: "answers" }), responses(spec, op.responses || {}));
      ops.append(section);
    }
  }
  const error = spec.components.schemas.Error;
  if (error) ops.append(el("section", { className: "op", id: "errors" },
    el("h3", { textContent: "Every error" }), el("p", {}, prose(spec.info.description || "")),
    fields(spec, error)));
}

fetch("/openapi.json").then((r) => {
  if (!r.ok) throw new Error(`HTTP ${r.status}`);
  return r.json();
}).then(render).catch((e) => {
  ops.replaceChildren(el("p", { textContent: `Could not load /openapi.json: ${e.message}` }));
});
