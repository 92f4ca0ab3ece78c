/**
 * bench/hint_hits.ts: what each block makes of its selection hint (counted
 * against hand-made values), and the script's table on a short synthetic run.
 */

import assert from "node:assert/strict";
import { CAND_CAP, countHintUse, type HintUse } from "../bench/hint_hits.ts";
import { microAdamGeometry } from "../src/core/geometry.ts";

const bits = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0];

Deno.test("countHintUse: a block uses its hint when k to 256 of its |a| reach it; fewer, more, none and the tail's k apart", () => {
  // Blocks of 1024 with k = 10 (tail of 700: k = 7), four full blocks and a tail.
  const geo = microAdamGeometry(4 * 1024 + 700, {
    window: 2,
    density: 10 / 1024,
    topkBlockSize: 1024,
    efBlockSize: 1024,
  });
  assert.equal(geo.kBlock, 10);
  assert.equal(geo.kTail, 7);
  const a = new Float32Array(geo.length).fill(0.25);
  const set = (block: number, count: number, v: number) => {
    for (let j = 0; j < count; j++) a[block * 1024 + j] = j % 2 ? -v : v;
  };
  set(0, 10, 2); // exactly k at or above 1: used (negative values by |a|)
  set(1, 9, 2); // k - 1: few
  set(2, CAND_CAP, 1); // exactly 256 (at the hint itself): used
  set(3, CAND_CAP + 1, 3); // 257: many
  set(4, 7, 5); // the tail's k = 7: used
  const hint = bits(1);
  const use: HintUse = { none: 0, used: 0, few: 0, many: 0, listed: 0 };
  countHintUse(geo, a, [hint, hint, hint, hint, hint], use);
  assert.deepEqual(use, { none: 0, used: 3, few: 1, many: 1, listed: 273 });
  // No hint yet (0) counts apart, whatever the values.
  countHintUse(geo, a, [0, 0, hint, 0, bits(6)], use);
  assert.deepEqual(use, {
    none: 3,
    used: 4,
    few: 2,
    many: 1,
    listed: 273 + 256,
  });
});

Deno.test({
  name:
    "bench/hint_hits.ts: three synthetic steps give a row per tensor and shares that add up to 100 %",
  async fn() {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../bench/hint_hits.ts", import.meta.url).pathname,
        "--steps",
        "3",
        "--data",
        "synthetic",
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.match(text, /3 steps of the MLP 784-256-128-10/);
    const rows = text.split("\n").filter((l) => /^\| (fc|all)/.test(l));
    assert.deepEqual(
      rows.map((r) => r.split("|")[1].trim()),
      [
        "fc1.weight",
        "fc1.bias",
        "fc2.weight",
        "fc2.bias",
        "fc3.weight",
        "fc3.bias",
        "all",
      ],
    );
    for (const r of rows) {
      const cells = r.split("|").map((c) => c.trim());
      // Two steps after the first have a hint in every block.
      const blocks = Number(cells[3] || 0);
      if (cells[1] !== "all") assert.equal(Number(cells[4]), 2 * blocks);
      const shares = cells.slice(5, 8).map((c) => parseFloat(c));
      // Those that used a hint listed between k and 256 values.
      const listed = parseFloat(cells[8]);
      assert.ok(listed >= 1 && listed <= 256, `${r}: listed ${cells[8]}`);
      const sum = shares.reduce((x, y) => x + y, 0);
      assert.ok(Math.abs(sum - 100) < 0.2, `${r}: shares add to ${sum}`);
    }
  },
});
