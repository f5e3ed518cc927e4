// Reading a streamed answer (SPEC section 8): Server-Sent Events as OpenAI sends them,
// `event: <type>` and `data: <json>` then a blank line; each yielded as [type, data].

export async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (value) buffer += decoder.decode(value, { stream: true });
    let at;
    while ((at = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, at);
      buffer = buffer.slice(at + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield [name, JSON.parse(data.join("\n"))];
    }
    if (done) return;
  }
}

// What the Raw JSON box shows of an event: its fields, the base64 as its size only.
export function shown(name, data) {
  const out = { event: name, ...data };
  if (data.b64_json) out.b64_json = `(${Math.round(data.b64_json.length * 0.75 / 1024)} KB of base64)`;
  return out;
}
