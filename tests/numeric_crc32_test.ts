/** src/numeric/crc32.ts: known vectors and continuation. */

import assert from "node:assert/strict";
import { crc32 } from "../src/numeric/crc32.ts";

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
