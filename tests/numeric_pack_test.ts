/** src/numeric/pack.ts: window entries, 4-bit codes and EF statistics. */

import assert from "node:assert/strict";
import {
  entryIndex,
  entryValueBits,
  getCode,
  packEntry,
  packStats,
  setCode,
} from "../src/numeric/pack.ts";

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
