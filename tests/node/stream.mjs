// The official openai Node SDK iterating the gateway's streams (tests/test_streaming_node.py).
// Usage: node stream.mjs <base_url> <token> <png path>; prints one JSON line per stream.
import { readFileSync } from "node:fs";
import OpenAI, { toFile } from "openai";

const [baseURL, apiKey, imagePath] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30000 });

function summary(events) {
  return events.map((e) => ({
    type: e.type, size: e.size, quality: e.quality, background: e.background,
    output_format: e.output_format, partial_image_index: e.partial_image_index,
    b64_bytes: e.b64_json ? Buffer.from(e.b64_json, "base64").length : 0,
    url: e.url, task_id: e.task_id, usage: e.usage,
  }));
}

async function collect(stream) {
  const events = [];
  for await (const event of stream) events.push(event);
  return summary(events);
}

const out = {};
out.generation = await collect(await client.images.generate({
  model: "gpt-image-2", prompt: "a node lighthouse", stream: true, partial_images: 2,
}));
out.edit = await collect(await client.images.edit({
  model: "gpt-image-2", prompt: "a node edit", stream: true, partial_images: 1,
  image: await toFile(readFileSync(imagePath), "a.png", { type: "image/png" }),
}));
out.nano = await collect(await client.images.generate({
  model: "nano-banana-pro", prompt: "a node fox", stream: true, partial_images: 2,
}));
try {
  await collect(await client.images.generate({
    model: "gpt-image-2", prompt: "cut", stream: true, partial_images: 2,
  }));
  out.error = null;
} catch (error) {
  out.error = { name: error.constructor.name, message: error.message };
}
console.log(JSON.stringify(out));
