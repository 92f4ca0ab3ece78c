/**
 * Numeric helpers: bf16 rounding, f32 fma and pow, bit packing, CRC-32, and
 * the MicroAdam geometry against the golden cases.
 */

import assert from "node:assert/strict";
import { rng } from "./rng.ts";
import {
  bf16Bits,
  bf16BitsDown,
  bf16BitsUp,
  bf16ToNumber,
  fromBf16Array,
  roundBf16,
  toBf16Array,
} from "../src/numeric/bf16.ts";
import { biasCorrection, fmaF32, powF32 } from "../src/numeric/f32.ts";
import {
  entryIndex,
  entryValueBits,
  getCode,
  packEntry,
  packStats,
  setCode,
} from "../src/numeric/pack.ts";
import { crc32 } from "../src/numeric/crc32.ts";
import { microAdamGeometry } from "../src/core/geometry.ts";
import { loadGoldenCases } from "./golden.ts";

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

Deno.test("bf16Bits: nearest-even, signs, subnormals, Inf and NaN", () => {
  assert.equal(bf16Bits(1), 0x3f80);
  assert.equal(bf16Bits(-1.5), 0xbfc0);
  // 1 + 2^-8 is halfway between 1 (even) and 1 + 2^-7 (odd): to even.
  assert.equal(bf16Bits(1 + 2 ** -8), 0x3f80);
  // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
  assert.equal(bf16Bits(1 + 3 * 2 ** -8), 0x3f82);
  assert.equal(bf16Bits(-(1 + 3 * 2 ** -8)), 0xbf82);
  // Just above a midpoint goes up.
  assert.equal(bf16Bits(fromBits(0x3f808001)), 0x3f81);
  assert.equal(bf16Bits(fromBits(0x3f807fff)), 0x3f80);
  // Subnormals: the smallest f32 subnormal rounds to 0; bf16 subnormal ties to even.
  assert.equal(bf16Bits(2 ** -149), 0x0000);
  assert.equal(bf16Bits(2 ** -133), 0x0001);
  assert.equal(bf16Bits(fromBits(0x00018000)), 0x0002);
  assert.equal(bf16Bits(fromBits(0x00008000)), 0x0000);
  assert.equal(bf16Bits(fromBits(0x80018000)), 0x8002);
  assert.equal(bf16Bits(-0), 0x8000);
  // Inf, overflow to Inf, NaN stays NaN (quiet).
  assert.equal(bf16Bits(Infinity), 0x7f80);
  assert.equal(bf16Bits(-Infinity), 0xff80);
  assert.equal(bf16Bits(fromBits(0x7f7fffff)), 0x7f80);
  const nan = bf16Bits(NaN);
  assert.equal(nan & 0x7f80, 0x7f80);
  assert.notEqual(nan & 0x7f, 0);
  assert.ok(Number.isNaN(bf16ToNumber(nan)));
  // A NaN whose payload sits only in the low 16 bits must not become Inf.
  assert.ok(Number.isNaN(bf16ToNumber(bf16Bits(fromBits(0x7f800001)))));
  assert.equal(roundBf16(1 + 2 ** -8), 1);
  assert.deepEqual(
    Array.from(fromBf16Array(toBf16Array([1, -2, 0.5]))),
    [1, -2, 0.5],
  );
});

Deno.test("bf16Bits agrees with an independent exact rounding on random f32", () => {
  const r = rng(1);
  for (let i = 0; i < 100000; i++) {
    const bits = Math.floor(r() * 2 ** 32) >>> 0;
    const x = fromBits(bits);
    if (!Number.isFinite(x)) continue;
    // Candidates: truncation and the next bf16 away from zero; pick the nearer, tie to even.
    const lo = bits >>> 16;
    const hi = lo + 1;
    const dl = Math.abs(x - bf16ToNumber(lo));
    // Past the largest finite bf16 the next step is 2^128 (rounding there overflows to Inf).
    const hiValue = (hi & 0x7f80) === 0x7f80
      ? Math.sign(x) * 2 ** 128
      : bf16ToNumber(hi);
    const dh = Math.abs(hiValue - x);
    const want = dl < dh ? lo : dh < dl ? hi : (lo & 1 ? hi : lo);
    assert.equal(bf16Bits(x), want, `x bits 0x${bits.toString(16)}`);
  }
});

Deno.test("bf16BitsDown/Up bracket the value and are adjacent", () => {
  const r = rng(2);
  for (let i = 0; i < 50000; i++) {
    const x = fromBits(Math.floor(r() * 2 ** 32));
    if (!Number.isFinite(x) || Math.abs(x) > 3.38e38) continue;
    const lo = bf16ToNumber(bf16BitsDown(x));
    const hi = bf16ToNumber(bf16BitsUp(x));
    assert.ok(lo <= x && x <= hi, `${lo} <= ${x} <= ${hi}`);
    if (roundBf16(x) === x) {
      assert.equal(lo, x);
      assert.equal(hi, x);
    } else {
      // No bf16 strictly between lo and x, or between x and hi: lo and hi are neighbours.
      assert.ok(lo < hi);
      const mid = (lo + hi) / 2;
      assert.ok(roundBf16(mid) === lo || roundBf16(mid) === hi);
      assert.equal(Math.abs(bf16BitsUp(x) - bf16BitsDown(x)), 1);
    }
  }
  assert.equal(bf16ToNumber(bf16BitsDown(-1.001)) <= -1.001, true);
  assert.equal(bf16ToNumber(bf16BitsUp(-1.001)) >= -1.001, true);
  assert.equal(bf16BitsDown(0), 0);
  assert.equal(bf16BitsUp(0), 0);
});

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

Deno.test("pack: window entries, 4-bit codes, stats", () => {
  const e = packEntry(65535, 0xbf80);
  assert.equal(e, 0xbf80ffff);
  assert.equal(entryIndex(e), 65535);
  assert.equal(entryValueBits(e), 0xbf80);
  assert.equal(packEntry(5, 0x3f80), 0x3f800005);
  const words = new Uint32Array(3);
  const codes = Array.from({ length: 20 }, (_, j) => (j * 7 + 3) % 16);
  codes.forEach((c, j) => setCode(words, j, c));
  codes.forEach((c, j) => assert.equal(getCode(words, j), c, `code ${j}`));
  // Overwriting one code leaves its neighbours alone.
  setCode(words, 9, 0);
  assert.equal(getCode(words, 9), 0);
  assert.equal(getCode(words, 8), codes[8]);
  assert.equal(getCode(words, 10), codes[10]);
  assert.equal(words[0] & 0xf, 3);
  assert.equal(words[0] >>> 28, codes[7]);
  assert.equal(packStats(0xbf80, 0x3f80), 0x3f80bf80);
});

Deno.test("crc32 known vectors and continuation", () => {
  const enc = new TextEncoder();
  assert.equal(crc32(enc.encode("123456789")), 0xcbf43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
  assert.equal(
    crc32(enc.encode("The quick brown fox jumps over the lazy dog")),
    0x414fa339,
  );
  assert.equal(
    crc32(enc.encode("6789"), crc32(enc.encode("12345"))),
    0xcbf43926,
  );
});

Deno.test("geometry reproduces the golden cases' k and block sizes", async () => {
  const cases = await loadGoldenCases();
  assert.ok(cases.length >= 2);
  for (const c of cases) {
    for (const t of c.config.tensors) {
      const g = microAdamGeometry(t.size, {
        window: c.config.m,
        density: c.config.density,
        topkBlockSize: c.config.topk_block_size,
        efBlockSize: c.config.quant_block_size,
      });
      assert.equal(g.rowEntries, t.k, `${c.name} size ${t.size}: k`);
      assert.equal(
        g.blockSize,
        t.topk_block,
        `${c.name} size ${t.size}: block`,
      );
      assert.equal(
        g.efBlocks,
        Math.floor(t.size / c.config.quant_block_size) + 1,
      );
      assert.equal(g.codeWords, Math.ceil(t.size / 8));
    }
  }
  // 70001 = 2 full blocks of 29056 (k 291) + tail 11889 (k 119).
  const g = microAdamGeometry(70001, {
    window: 10,
    density: 0.01,
    topkBlockSize: 29056,
    efBlockSize: 100000,
  });
  assert.deepEqual([g.fullBlocks, g.tail, g.kBlock, g.kTail], [
    2,
    11889,
    291,
    119,
  ]);
});
