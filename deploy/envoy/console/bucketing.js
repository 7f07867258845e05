// Sticky bucketing, exactly as the router computes it (services/router/modelhub/router/
// bucketing.py) and Envoy's Lua filter routes by it (deploy/envoy/modelhub.lua):
//
//   bucket(salt, key) = h32(utf8(salt) + NUL + utf8(key)) % TOTAL
//   h32 = 32-bit FNV-1a, then murmur3's fmix32
//
// and the variants' ranges are cumulative over the endpoint's order, each boundary the
// *cumulative* weight scaled to TOTAL and rounded half up, computed exactly (weights are
// doubles: here as BigInt multiples of a power of two, there as Python Fractions). So the
// preview of a weight change is what Envoy will do, key by key.

export const TOTAL = 10000;

const encoder = new TextEncoder();

export function h32(bytes) {
  let h = 0x811c9dc5;
  for (const b of bytes) {
    h = Math.imul(h ^ b, 16777619) >>> 0;
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

function join(...parts) {
  const chunks = parts.map((part) => (typeof part === "string" ? encoder.encode(part) : part));
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

const NUL = new Uint8Array([0]);

// The key's bucket in [0, TOTAL).
export function bucket(salt, key) {
  return h32(join(salt, NUL, key)) % TOTAL;
}

// The independent per-shadow sampling bucket: a key is mirrored when it is below
// threshold(sample_rate).
export function sampleBucket(salt, shadow, key) {
  return h32(join("shadow", NUL, salt, NUL, shadow, NUL, key)) % TOTAL;
}

export function threshold(rate) {
  // Python's round() rounds half to even; rate * TOTAL is rarely exactly .5.
  const x = rate * TOTAL;
  const floor = Math.floor(x);
  const diff = x - floor;
  let r = diff > 0.5 ? floor + 1 : diff < 0.5 ? floor : floor % 2 === 0 ? floor : floor + 1;
  return Math.max(0, Math.min(TOTAL, r));
}

// A finite non-negative double as [BigInt m, e] with value m * 2^e, exactly.
function exact(x) {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const hi = view.getUint32(0);
  const lo = view.getUint32(4);
  const biased = (hi >>> 20) & 0x7ff;
  const fraction = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  if (biased === 0) {
    return [fraction, -1074];
  }
  return [fraction | (1n << 52n), biased - 1075];
}

// Integer widths summing to TOTAL (see bucketing.scaled): throws on weights the registry
// would refuse (negative, not finite, zero sum).
export function scaled(weights) {
  if (!weights.length || weights.some((w) => !Number.isFinite(w) || w < 0)) {
    throw new RangeError("weights must be finite and non-negative");
  }
  const parts = weights.map(exact);
  const base = Math.min(...parts.map(([, e]) => e));
  const ints = parts.map(([m, e]) => m << BigInt(e - base));
  const total = ints.reduce((a, b) => a + b, 0n);
  if (total <= 0n) {
    throw new RangeError("weights must have a positive sum");
  }
  const out = [];
  let running = 0n;
  let previous = 0;
  for (const w of ints) {
    running += w;
    // floor(running * TOTAL / total + 1/2), exactly.
    const boundary = Number((2n * running * BigInt(TOTAL) + total) / (2n * total));
    out.push(boundary - previous);
    previous = boundary;
  }
  return out;
}

// [{lower, upper}] per variant, in order.
export function ranges(weights) {
  let lower = 0;
  return scaled(weights).map((width) => {
    const range = { lower, upper: lower + width };
    lower += width;
    return range;
  });
}

// Index of the variant whose range holds bucket u (the first range whose upper bound is
// above u).
export function pick(rangeList, u) {
  const b = ((u % TOTAL) + TOTAL) % TOTAL;
  for (let i = 0; i < rangeList.length; i += 1) {
    if (b < rangeList[i].upper) {
      return i;
    }
  }
  return rangeList.length;
}

// What a change of weights moves: buckets[i][j] = buckets served by variant i before and by
// variant j after (variants matched by position: the editor keeps the list). Returns
// {matrix, moved} with moved the total of the off-diagonal cells.
export function movement(before, after) {
  const a = ranges(before);
  const b = ranges(after);
  const matrix = a.map(() => b.map(() => 0));
  let moved = 0;
  for (let i = 0; i < a.length; i += 1) {
    for (let j = 0; j < b.length; j += 1) {
      const overlap = Math.max(
        0,
        Math.min(a[i].upper, b[j].upper) - Math.max(a[i].lower, b[j].lower),
      );
      matrix[i][j] = overlap;
      if (i !== j) {
        moved += overlap;
      }
    }
  }
  return { matrix, moved, before: a, after: b };
}
