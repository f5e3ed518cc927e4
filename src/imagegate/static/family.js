// What each model family accepts, mirroring core/params.py, and what a form costs.
// The page greys out what the family ignores so nobody pays for a knob that does nothing.

export const STATES = ["queued", "running", "succeeded", "failed"];

const NANO_SIZES = [
  ["1024x1024", "1:1"], ["1792x1024", "16:9"], ["1024x1792", "9:16"], ["1536x1024", "3:2"],
  ["1024x1536", "2:3"], ["1024x768", "4:3"], ["768x1024", "3:4"], ["1792x768", "21:9"],
  ["512x512", "1:1 small"],
];
// nano-banana-2 and -pro pick imageSize 1K/2K/4K from the long side (SPEC section 2).
const NANO_LARGE = [
  ["2048x2048", "1:1 · 2K"], ["2048x1152", "16:9 · 2K"], ["1152x2048", "9:16 · 2K"],
  ["4096x4096", "1:1 · 4K"], ["4096x2304", "16:9 · 4K"], ["2304x4096", "9:16 · 4K"],
];
const GPT_IMAGE_2_LARGE = [
  ["2048x2048", "1:1"], ["2048x1152", "16:9"], ["3840x2160", "16:9 · 4K"],
  ["2160x3840", "9:16 · 4K"],
];
export const CUSTOM = ["custom", "custom WxH…"];

export const FAMILY = {
  "dalle": {
    fields: ["size", "quality", "style", "response_format"],
    quality: ["standard", "hd"], nMax: 1,
    defaults: { quality: "standard", size: "1024x1024" },
    sizes: [["1024x1024", "1:1"], ["1792x1024", "landscape"], ["1024x1792", "portrait"]],
  },
  "gpt-image": {
    fields: ["size", "n", "quality", "background", "output_format", "output_compression",
             "moderation", "response_format"],
    quality: ["auto", "low", "medium", "high"], nMax: 10,
    defaults: { quality: "auto", size: "auto" },
    sizes: [["auto", ""], ["1024x1024", "1:1"], ["1536x1024", "3:2"], ["1024x1536", "2:3"]],
  },
  "nano-banana": {
    fields: ["size", "n", "output_format", "output_compression", "response_format"],
    quality: [], nMax: 10,
    defaults: { quality: null, size: "1024x1024" },
    sizes: NANO_SIZES,
  },
};

export const PARAMS = ["size", "n", "quality", "style", "background", "output_format",
                       "output_compression", "moderation", "response_format"];

export function familyOf(model) {
  return FAMILY[model && model.family] || FAMILY.dalle;
}

// [value, label] pairs for the size select of one model.
export function sizesOf(model) {
  const fam = familyOf(model);
  const id = model ? model.id : "";
  if (id === "gpt-image-2") return fam.sizes.concat(GPT_IMAGE_2_LARGE, [CUSTOM]);
  if (id === "nano-banana-2" || id === "nano-banana-pro") {
    return fam.sizes.concat(NANO_LARGE, [CUSTOM]);
  }
  if (fam === FAMILY["nano-banana"]) return fam.sizes.concat([CUSTOM]);
  return fam.sizes;
}

const AUTO_PIXELS = 1024 * 1024;  // registry.pixels_of: auto (or no size) counts as 1024x1024

function pixels(size) {
  const m = /^(\d+)x(\d+)$/.exec(size || "");
  return m ? Number(m[1]) * Number(m[2]) : AUTO_PIXELS;
}

function tierMatches(tier, quality, size) {
  if (tier.quality != null && tier.quality !== quality) return false;
  if (tier.size != null && !tier.size.includes(size)) return false;
  const px = pixels(size);
  return (tier.min_pixels == null || px >= tier.min_pixels)
    && (tier.max_pixels == null || px <= tier.max_pixels);
}

// Same rule as ModelConfig.price_per_image: the most specific matching tier wins, ties go
// to the later one, and a tier naming the operation (edits) beats those that do not.
// Quality and size fall back to the family's defaults, as the server does.
export function pricePerImage(model, body, operation = "generations") {
  const fam = familyOf(model);
  const quality = body.quality || fam.defaults.quality;
  const size = body.size || fam.defaults.size;
  let best = model.price;
  let bestScore = -1;
  for (const tier of model.price_tiers || []) {
    if (tier.operation != null && tier.operation !== operation) continue;
    if (!tierMatches(tier, quality, size)) continue;
    const sized = tier.size != null || tier.min_pixels != null || tier.max_pixels != null;
    const score = (tier.quality != null ? 1 : 0) + (sized ? 1 : 0) + (tier.operation ? 10 : 0);
    if (score >= bestScore) { best = tier.price; bestScore = score; }
  }
  return best;
}

export function credits(value) {
  return String(Number(value.toFixed(6)));
}

export function priceRange(model) {
  const prices = [model.price, ...(model.price_tiers || []).filter((t) => !t.operation)
    .map((t) => t.price)];
  const low = Math.min(...prices);
  const high = Math.max(...prices);
  return low === high ? credits(low) : `${credits(low)}–${credits(high)}`;
}

export function costText(model, body, operation = "generations") {
  const each = pricePerImage(model, body, operation);
  const n = body.n || 1;
  const total = credits(each * n);
  return n > 1 ? `Cost: ${credits(each)} × ${n} = ${total} credits` : `Cost: ${total} credits`;
}
