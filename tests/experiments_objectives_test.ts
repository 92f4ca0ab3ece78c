/**
 * The experiments' objectives: every gradient against central finite
 * differences, minibatch gradients against the full gradient, least
 * squares' minimum, the counterexamples' gradient sequences.
 */

import assert from "node:assert/strict";
import { rng } from "./rng.ts";
import {
  GemanMcClure,
  LeastSquares,
  NoisyQuadratic,
  type Objective,
  OnlineLinear,
  regressionData,
  Rosenbrock,
  SinePL,
  StochasticLinear,
} from "../src/experiments/objectives.ts";
import { solveSpd } from "../src/experiments/linalg.ts";
import { InvalidOptionError } from "../src/errors.ts";

/** Max relative error of f.gradient against central differences at x. */
function fdError(f: Objective, x: Float64Array): number {
  const g = f.gradient(x);
  let worst = 0;
  const scale = Math.max(1e-8, ...Array.from(g, Math.abs));
  for (let i = 0; i < x.length; i++) {
    const h = 1e-6 * Math.max(1, Math.abs(x[i]));
    const xp = x.slice();
    const xm = x.slice();
    xp[i] += h;
    xm[i] -= h;
    const fd = (f.value(xp) - f.value(xm)) / (2 * h);
    worst = Math.max(worst, Math.abs(fd - g[i]) / scale);
  }
  return worst;
}

Deno.test("objectives: gradients match central finite differences", () => {
  const u = rng(1);
  const point = (d: number, s: number) =>
    Float64Array.from({ length: d }, () => (u() - 0.5) * s);
  const cases: [string, Objective, number][] = [
    [
      "Geman–McClure (gaussian)",
      new GemanMcClure(regressionData({ n: 60, d: 7, seed: 2, outliers: 0.1 })),
      7,
    ],
    [
      "Geman–McClure (heavy)",
      new GemanMcClure(
        regressionData({ n: 60, d: 7, seed: 3, tails: "heavy" }),
      ),
      7,
    ],
    [
      "least squares",
      new LeastSquares(regressionData({ n: 30, d: 5, seed: 4 })),
      5,
    ],
    ["x² + 3 sin² x", new SinePL(6), 6],
    [
      "noisy quadratic",
      new NoisyQuadratic({
        target: new Float32Array([1, -2, 3]),
        noisy: 1,
        noise: 9,
      }),
      3,
    ],
    ["Rosenbrock", new Rosenbrock(), 2],
  ];
  for (const [name, f, d] of cases) {
    for (let trial = 0; trial < 3; trial++) {
      const err = fdError(f, point(d, 4));
      assert.ok(err < 1e-6, `${name}: relative error ${err}`);
    }
  }
});

Deno.test("objectives: a minibatch of every sample is the full gradient", () => {
  for (
    const f of [
      new GemanMcClure(regressionData({ n: 40, d: 5, seed: 5, outliers: 0.2 })),
      new LeastSquares(regressionData({ n: 40, d: 5, seed: 6 })),
    ]
  ) {
    const x = Float64Array.from([0.3, -1, 2, 0.5, 0]);
    const full = f.gradient(x);
    const batch = new Float32Array(5);
    f.batchGradient(x, Array.from({ length: 40 }, (_, i) => i), batch);
    for (let j = 0; j < 5; j++) {
      assert.ok(Math.abs(batch[j] - full[j]) < 1e-6 * (1 + Math.abs(full[j])));
    }
    // A single-sample batch differs from it (the noise the optimizers see).
    f.batchGradient(x, [3], batch);
    assert.ok(batch.some((v, j) => Math.abs(v - full[j]) > 1e-3));
  }
});

Deno.test("least squares: f* at the normal equations' solution, where the gradient vanishes", () => {
  const f = new LeastSquares(regressionData({ n: 200, d: 10, seed: 7 }));
  const g = f.gradient(f.solution);
  assert.ok(Math.max(...Array.from(g, Math.abs)) < 1e-12);
  const u = rng(2);
  for (let i = 0; i < 5; i++) {
    const x = f.solution.map((v) => v + (u() - 0.5) * 0.1);
    assert.ok(f.value(x) > f.minimum);
  }
});

Deno.test("solveSpd: known system, and a non-positive-definite matrix is refused", () => {
  // G = [[4, 2, 0], [2, 5, 1], [0, 1, 3]], x = [1, -1, 2] → h = G·x = [2, -1, 5].
  const G = new Float64Array([4, 2, 0, 2, 5, 1, 0, 1, 3]);
  const x = solveSpd(G, new Float64Array([2, -1, 5]), 3);
  [1, -1, 2].forEach((v, i) => assert.ok(Math.abs(x[i] - v) < 1e-14));
  assert.throws(
    () => solveSpd(new Float64Array([1, 2, 2, 1]), new Float64Array(2), 2),
    (e: unknown) =>
      e instanceof InvalidOptionError && /pivot -3 at row 1/.test(e.message),
  );
});

Deno.test("OnlineLinear: spikes at t ≡ 1 (mod period), phase-shifted per coordinate", () => {
  const f = new OnlineLinear({ spike: 1010, base: 10, period: 101, dim: 3 });
  const g = new Float32Array(3);
  assert.deepEqual(Array.from(f.gradientAt(1, g)), [1010, -10, -10]);
  assert.deepEqual(Array.from(f.gradientAt(100, g)), [-10, -10, 1010]);
  assert.deepEqual(Array.from(f.gradientAt(102, g)), [1010, -10, -10]);
  // Over a period each coordinate sees one spike: the mean gradient is (1010 − 1000)/101.
  const sums = [0, 0, 0];
  for (let t = 1; t <= 101; t++) {
    f.gradientAt(t, g).forEach((v, i) => sums[i] += v);
  }
  sums.forEach((s) => assert.ok(Math.abs(s / 101 - f.meanGradient) < 1e-12));
  assert.equal(f.averageGap([-1, -1, -1]), 0);
  assert.ok(Math.abs(f.averageGap([1, 1, 1]) - 2 * 10 / 101) < 1e-12);
});

Deno.test("StochasticLinear: spike frequency and mean gradient", () => {
  const f = new StochasticLinear({ spike: 1010, base: 10, p: 0.01 });
  const g = new Float32Array(200000);
  f.sample(rng(3), g);
  const spikes = g.filter((v) => v === 1010).length;
  // Binomial(2e5, 0.01): sd ≈ 44.5.
  assert.ok(Math.abs(spikes - 2000) < 250, `${spikes} spikes`);
  assert.ok(g.every((v) => v === 1010 || v === -10));
  assert.ok(Math.abs(f.meanGradient - 0.2) < 1e-12);
});

Deno.test("NoisyQuadratic: noise only on the noisy coordinates, bounded, zero mean", () => {
  const f = new NoisyQuadratic({
    target: new Float32Array(100).fill(1),
    noisy: 50,
    noise: 10,
  });
  const u = rng(4);
  const x = new Float32Array(100);
  const g = new Float32Array(100);
  const sum = new Float64Array(100);
  for (let s = 0; s < 2000; s++) {
    f.sample(x, u, g);
    for (let i = 0; i < 100; i++) sum[i] += g[i];
    for (let i = 50; i < 100; i++) assert.equal(g[i], -1);
    for (let i = 0; i < 50; i++) assert.ok(Math.abs(g[i] + 1) <= 10);
  }
  // Mean over 2000 draws of U[−10, 10]: sd ≈ 0.13.
  for (let i = 0; i < 50; i++) assert.ok(Math.abs(sum[i] / 2000 + 1) < 0.7);
  assert.equal(f.value(x), 50);
});
