/** src/numeric/f32.ts: the exact f32 fma (against a BigInt oracle), the f32 power, bias corrections. */

import assert from "node:assert/strict";
import { rng } from "./rng.ts";
import { biasCorrection, fmaF32, powF32 } from "../src/numeric/f32.ts";

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);
const fromBits = (b: number) => {
  u32buf[0] = b >>> 0;
  return f32buf[0];
};
const bitsOf = (x: number) => {
  f32buf[0] = x;
  return u32buf[0];
};

// ---------- exact f32 fma oracle (BigInt, dyadic rationals) ----------

/** x = n · 2^e exactly, for a finite f32 x. */
function dyadic(x: number): [bigint, number] {
  const b = bitsOf(x);
  const sign = b >>> 31 ? -1n : 1n;
  const ex = (b >>> 23) & 0xff;
  const man = b & 0x7fffff;
  if (ex === 0) return [sign * BigInt(man), -149];
  return [sign * BigInt(man | 0x800000), ex - 150];
}

function align(n: bigint, e: number, to: number): bigint {
  return n << BigInt(e - to);
}

/** The correctly rounded (nearest-even) f32 of a·b + c, computed exactly. */
function exactFma(a: number, b: number, c: number): number {
  const [na, ea] = dyadic(a);
  const [nb, eb] = dyadic(b);
  const [nc, ec] = dyadic(c);
  const ep = ea + eb;
  const E = Math.min(ep, ec, -149);
  const X = align(na * nb, ep, E) + align(nc, ec, E);
  // Start near the answer, then pick the best of the neighbours exactly.
  const approx = Math.fround(Number(X) * 2 ** E);
  let best = NaN;
  let bestDiff = -1n;
  for (const off of [-2, -1, 0, 1, 2]) {
    let cand: number;
    if (approx === 0) cand = fromBits(off >= 0 ? off : 0x80000000 - off);
    else cand = fromBits(bitsOf(approx) + off);
    if (!Number.isFinite(cand)) continue;
    const [nc2, ec2] = dyadic(cand);
    let diff = X - align(nc2, ec2, E);
    if (diff < 0n) diff = -diff;
    if (
      bestDiff < 0n || diff < bestDiff ||
      (diff === bestDiff && (bitsOf(cand) & 1) === 0 && bitsOf(best) & 1)
    ) {
      best = cand;
      bestDiff = diff;
    }
  }
  if (X === 0n) return Math.fround(a * b + c); // signed zero by IEEE rules
  return best;
}

function randomF32(r: () => number, minExp: number, maxExp: number): number {
  const e = minExp + Math.floor(r() * (maxExp - minExp + 1));
  const m = 1 + Math.floor(r() * 2 ** 23) / 2 ** 23;
  return Math.fround((r() < 0.5 ? -1 : 1) * m * 2 ** e);
}

Deno.test("fmaF32 equals the exact rounding on random triples", () => {
  const r = rng(3);
  let naiveWrong = 0;
  for (let i = 0; i < 30000; i++) {
    const a = randomF32(r, -30, 30);
    const b = randomF32(r, -30, 30);
    // c near the product's magnitude makes cancellation and carries likely.
    const c = i % 3 === 0
      ? randomF32(r, -60, 60)
      : Math.fround(-a * b * (1 + (r() - 0.5) * 2 ** -10));
    const want = exactFma(a, b, c);
    assert.equal(fmaF32(a, b, c), want, `fma(${a}, ${b}, ${c})`);
    if (Math.fround(Math.fround(a * b) + c) !== want) naiveWrong++;
  }
  // Double rounding is common on these inputs, so the test has teeth.
  assert.ok(
    naiveWrong > 1000,
    `naive f32 mul+add was wrong ${naiveWrong} times`,
  );
});

Deno.test("fmaF32 resolves f64 sums that land exactly on an f32 midpoint", () => {
  const r = rng(4);
  let n = 0;
  for (let i = 0; i < 2000; i++) {
    // r0: an f32 with odd significand and even exponent, so ulp/2 = h² with h a power of two.
    const e = 2 * Math.floor(r() * 40 - 20);
    const man = (Math.floor(r() * 2 ** 22) * 2 + 1) | 0x800000;
    const r0 = Math.fround((r() < 0.5 ? -1 : 1) * man * 2 ** (e - 23));
    const h = 2 ** ((e - 24) / 2);
    const d = h * 2 ** -23;
    // a·b = ±(h² − d²): the f64 sum r0 ± h² rounds onto the midpoint, the
    // true value lies d² inside it, and naive rounding ties to the even side.
    const sign = r() < 0.5 ? -1 : 1;
    const a = Math.fround(sign * (h + d));
    const b = Math.fround(h - d);
    const want = exactFma(a, b, r0);
    assert.equal(want, r0, "the true value rounds back to r0");
    assert.notEqual(Math.fround(a * b + r0), want, "naive is wrong here");
    assert.equal(fmaF32(a, b, r0), want, `fma(${a}, ${b}, ${r0})`);
    n++;
  }
  assert.equal(n, 2000);
});

Deno.test("fmaF32 in the subnormal range and with exact zeros", () => {
  const r = rng(5);
  for (let i = 0; i < 5000; i++) {
    const a = randomF32(r, -80, -60);
    const b = randomF32(r, -80, -60);
    const c = randomF32(r, -149, -126);
    assert.equal(fmaF32(a, b, c), exactFma(a, b, c), `fma(${a}, ${b}, ${c})`);
  }
  assert.equal(fmaF32(3, 0.5, 1), 2.5);
  assert.equal(fmaF32(2, 3, -6), 0);
  assert.equal(fmaF32(0, 5, 7), 7);
});

Deno.test("powF32 uses square-and-multiply in f32", () => {
  const fr = Math.fround;
  const b = fr(0.999);
  const b2 = fr(b * b);
  const b4 = fr(b2 * b2);
  const b8 = fr(b4 * b4);
  assert.equal(powF32(b, 0), 1);
  assert.equal(powF32(b, 1), b);
  assert.equal(powF32(b, 2), b2);
  assert.equal(powF32(b, 3), fr(b * b2));
  assert.equal(powF32(b, 5), fr(b * b4));
  assert.equal(powF32(b, 6), fr(b2 * b4));
  assert.equal(powF32(b, 7), fr(fr(b * b2) * b4));
  assert.equal(powF32(b, 13), fr(fr(b * b4) * b8));
  assert.equal(powF32(0.5, 10), 2 ** -10);
  // The order matters: left-to-right multiplication differs for some t.
  let differs = 0;
  for (let t = 1; t < 200; t++) {
    let naive = 1;
    for (let i = 0; i < t; i++) naive = fr(naive * b);
    if (naive !== powF32(b, t)) differs++;
    assert.ok(Math.abs(powF32(b, t) - 0.999 ** t) < 1e-5);
  }
  assert.ok(differs > 0);
  assert.equal(biasCorrection(0.9, 1), 1);
  const bc = biasCorrection(0.999, 10);
  // f32 powers carry ~1e-7 absolute error, which 1 − b^10 ≈ 0.01 magnifies.
  assert.ok(Math.abs(bc - (1 - b) / (1 - b ** 10)) < 1e-4 * bc);
  assert.equal(bc, fr((1 - b) / (1 - powF32(b, 10))));
});
