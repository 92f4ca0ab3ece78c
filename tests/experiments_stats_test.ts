/** Slope fits, bootstrap intervals, grids and verdict tables against known cases. */

import assert from "node:assert/strict";
import { rng } from "./rng.ts";
import { normal } from "../src/numeric/rng.ts";
import {
  bootstrap,
  fitLine,
  geometricMean,
  logLogFit,
  mean,
  quantile,
} from "../src/experiments/stats.ts";
import { argmin, cartesian, logGrid } from "../src/experiments/grid.ts";
import { markdownTable, num, verdictTable } from "../src/experiments/report.ts";
import { InvalidOptionError } from "../src/errors.ts";

Deno.test("fitLine: an exact line is recovered exactly; R² falls with noise", () => {
  const x = [0, 1, 2, 3, 4];
  const f = fitLine(x, x.map((v) => 2.5 - 0.75 * v));
  assert.ok(Math.abs(f.slope + 0.75) < 1e-15);
  assert.ok(Math.abs(f.intercept - 2.5) < 1e-15);
  assert.equal(f.r2, 1);
  const noisy = fitLine(x, [2.5, 1.9, 1.0, 0.3, -0.4]);
  assert.ok(noisy.r2 < 1 && noisy.r2 > 0.95);
  // Closed form for this data: slope = Σ(x−2)(y−ȳ)/Σ(x−2)² = −7.4/10.
  assert.ok(Math.abs(noisy.slope + 0.74) < 1e-12);
  assert.throws(() => fitLine([1, 1], [1, 2]), InvalidOptionError);
  assert.throws(() => fitLine([1], [1]), InvalidOptionError);
});

Deno.test("logLogFit: the exponent of a power law under multiplicative noise", () => {
  const u = rng(1);
  const T = [256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];
  const y = T.map((t) => 7 * t ** -0.5 * Math.exp(0.05 * normal(u)));
  const f = logLogFit(T, y);
  assert.ok(Math.abs(f.slope + 0.5) < 0.03, `slope ${f.slope}`);
  assert.ok(Math.abs(Math.exp(f.intercept) / 7 - 1) < 0.3);
});

Deno.test("bootstrap: the interval of a mean matches the normal theory and covers the truth", () => {
  // 400 draws of N(3, 2²): the 95 % interval is about mean ± 1.96·2/√400 = ± 0.196.
  let covered = 0;
  for (let seed = 0; seed < 20; seed++) {
    const u = rng(100 + seed);
    const xs = Array.from({ length: 400 }, () => 3 + 2 * normal(u));
    const ci = bootstrap(xs.length, (idx) => mean(idx.map((i) => xs[i])), {
      seed,
      resamples: 1000,
    });
    assert.equal(ci.estimate, mean(xs));
    const half = (ci.hi - ci.lo) / 2;
    assert.ok(Math.abs(half / 0.196 - 1) < 0.2, `half-width ${half}`);
    if (ci.lo <= 3 && 3 <= ci.hi) covered++;
  }
  // 95 % coverage: 20 of 20 expected about 36 % of the time, ≥ 16 virtually always.
  assert.ok(covered >= 16, `covered ${covered} of 20`);
});

Deno.test("bootstrap: a constant sample has a zero-width interval; seeds replay", () => {
  const ci = bootstrap(10, () => 4.5);
  assert.deepEqual(ci, { estimate: 4.5, lo: 4.5, hi: 4.5 });
  const xs = [1, 5, 2, 8, 3];
  const stat = (idx: number[]) => mean(idx.map((i) => xs[i]));
  assert.deepEqual(
    bootstrap(5, stat, { seed: 3 }),
    bootstrap(5, stat, { seed: 3 }),
  );
  assert.throws(() => bootstrap(0, stat), InvalidOptionError);
  assert.throws(() => bootstrap(5, stat, { level: 1 }), InvalidOptionError);
});

Deno.test("quantile, mean, geometricMean: known values", () => {
  assert.equal(quantile([5, 1, 3], 0), 1);
  assert.equal(quantile([5, 1, 3], 1), 5);
  assert.equal(quantile([1, 2, 3, 4, 5], 0.25), 2);
  assert.equal(quantile([1, 2], 0.3), 1.3);
  assert.equal(mean([2, 4]), 3);
  assert.ok(Math.abs(geometricMean([2, 8]) - 4) < 1e-15);
});

Deno.test("grids: log grid, cartesian product, argmin skipping diverged points", () => {
  assert.deepEqual(logGrid(1e-4, 1e-2, 2), [
    1e-4,
    0.000316,
    0.001,
    0.00316,
    0.01,
  ]);
  const g = cartesian({ lr: [1, 2], eps: [0.1, 0.2, 0.3] });
  assert.equal(g.length, 6);
  assert.deepEqual(g[4], { lr: 2, eps: 0.2 });
  const t = argmin([1, 2, 3], (x) => (x === 1 ? NaN : x));
  assert.equal(t.best, 2);
  assert.equal(t.all.length, 3);
  assert.throws(() => argmin([], () => 0), InvalidOptionError);
  assert.throws(() => logGrid(0, 1, 1), InvalidOptionError);
});

Deno.test("report: verdict table, markdown table, number formatting", () => {
  const v = verdictTable([
    { claim: "a | b", measured: "1", holds: true },
    { claim: "c", measured: "2", holds: false },
  ]).split("\n");
  assert.equal(v[0], "| claim | measured | holds? |");
  assert.equal(v[2], "| a \\| b | 1 | yes |");
  assert.equal(v[3], "| c | 2 | **no** |");
  assert.equal(markdownTable([{ x: 1 }, { x: 2 }]).split("\n").length, 4);
  assert.equal(num(0.000123456), "1.23e-4");
  assert.equal(num(123456), "1.23e5");
  assert.equal(num(0.5), "0.500");
  assert.equal(num(NaN), "NaN");
});
