/** src/core/geometry.ts: block structure against the golden cases. */

import assert from "node:assert/strict";
import { microAdamGeometry } from "../src/core/geometry.ts";
import { loadGoldenCases } from "./golden.ts";

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
