/** src/numeric/bf16.ts: rounding to nearest-even, directed rounding, array conversions. */

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

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);
const fromBits = (b: number) => {
  u32buf[0] = b >>> 0;
  return f32buf[0];
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
