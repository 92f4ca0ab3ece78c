/**
 * MicroAdamTheoryCpu (docs/algorithm.md §C): AMSGrad without bias correction when nothing
 * is compressed, error feedback when something is, and the AMSGrad maximum.
 */

import assert from "node:assert/strict";
import { rng } from "./rng.ts";
import { MicroAdamTheoryCpu } from "../src/reference/microadam_theory.ts";
import { CheckpointError, InvalidOptionError } from "../src/errors.ts";

function f32s(b: Uint8Array): Float32Array {
  return new Float32Array(b.slice().buffer);
}

Deno.test("density 1: two steps equal AMSGrad without bias correction (f64 closed form)", () => {
  const lr = 0.01;
  const eps = 1e-8;
  const b1 = Math.fround(0.9);
  const b2 = Math.fround(0.999);
  const p0 = [0.5, -1, 2, 0.25];
  const gs = [[1, 0.1, -0.5, 0], [0.01, 0.2, -0.5, 0.3]]; // coord 0: v falls at step 2
  const param = Float32Array.from(p0);
  const grad = new Float32Array(4);
  const opt = new MicroAdamTheoryCpu([{ param, grad }], { lr, density: 1 });
  for (const g of gs) {
    grad.set(g);
    opt.step();
  }
  // Nothing was compressed: the error feedback is exactly zero.
  const bufs = opt.stateDict().tensors[0].buffers;
  assert.ok(bufs.codes.every((x) => x === 0));
  assert.ok(f32s(bufs.stats).every((x) => x === 0));

  const want: number[] = [];
  const noMax: number[] = [];
  for (let j = 0; j < 4; j++) {
    let [m, v, vh, p, q] = [0, 0, 0, p0[j], p0[j]];
    for (const g of gs) {
      m = b1 * m + (1 - b1) * g[j];
      v = b2 * v + (1 - b2) * g[j] ** 2;
      vh = Math.max(vh, v);
      p -= lr * m / Math.sqrt(vh + eps);
      q -= lr * m / Math.sqrt(Math.max(v, 0) + eps);
    }
    want.push(p);
    noMax.push(q);
  }
  for (let j = 0; j < 4; j++) {
    assert.ok(
      Math.abs(param[j] - want[j]) < 1e-6,
      `coord ${j}: ${param[j]} vs ${want[j]}`,
    );
  }
  // Coordinate 0's v fell, so the maximum matters there (and only there).
  // (sqrt(v1/v2) ≈ 1.00045: a 1.3e-5 difference, 13× the tolerance above.)
  assert.ok(Math.abs(want[0] - noMax[0]) > 1e-5);
  assert.ok(Math.abs(param[0] - noMax[0]) > 1e-5);
  for (let j = 1; j < 4; j++) assert.equal(want[j], noMax[j]);
  // Step 1 by hand: m = 0.1·g, v = 0.001·g², move = lr·0.1·g/sqrt(0.001·g² + ε).
  const m1 = (1 - b1) * 1;
  const v1 = (1 - b2) * 1;
  const hand = 0.5 - lr * m1 / Math.sqrt(v1 + eps) -
    lr * (b1 * m1 + (1 - b1) * 0.01) / Math.sqrt(v1 + eps);
  assert.ok(Math.abs(param[0] - hand) < 1e-6);
});

Deno.test("error feedback: an unselected coordinate moves eventually", () => {
  const d = 10;
  const param = new Float32Array(d);
  const grad = new Float32Array(d).fill(0.05);
  grad[0] = 1;
  const opt = new MicroAdamTheoryCpu([{ param, grad }], {
    lr: 0.01,
    density: 0.1, // k = 1
    efBlockSize: 10,
  });
  opt.step();
  assert.ok(param[0] < 0);
  assert.ok(param.subarray(1).every((p) => p === 0));
  let moved = -1;
  for (let t = 2; t <= 100 && moved < 0; t++) {
    opt.step();
    if (param.subarray(1).some((p) => p !== 0)) moved = t;
  }
  // |0.05·t| overtakes 1 after about 20 steps.
  assert.ok(moved >= 15 && moved <= 30, `moved at ${moved}`);
  // Without error feedback nothing but coordinate 0 could ever win top-1.
});

Deno.test("AMSGrad maximum: v̂ is the running max of v", () => {
  const r = rng(31);
  const d = 64;
  const param = new Float32Array(d);
  const grad = new Float32Array(d);
  const opt = new MicroAdamTheoryCpu([{ param, grad }], {
    lr: 1e-3,
    density: 0.25,
    efBlockSize: 16,
  });
  const runMax = new Float32Array(d);
  let fell = 0;
  for (let t = 1; t <= 40; t++) {
    const scale = 1 / t; // shrinking gradients make v fall
    for (let j = 0; j < d; j++) grad[j] = (r() - 0.5) * scale;
    opt.step();
    const b = opt.stateDict().tensors[0].buffers;
    const v = f32s(b.expAvgSq);
    const vh = f32s(b.maxExpAvgSq);
    for (let j = 0; j < d; j++) {
      runMax[j] = Math.max(runMax[j], v[j]);
      assert.equal(vh[j], runMax[j], `t ${t} coord ${j}`);
      if (vh[j] > v[j]) fell++;
    }
  }
  assert.ok(fell > 100, `v̂ > v happened ${fell} times`);
});

Deno.test("theory: decoupled weight decay, state size, round trip, validation", () => {
  const param = new Float32Array([1, -2]);
  const opt = new MicroAdamTheoryCpu([{ param, grad: new Float32Array(2) }], {
    lr: 0.1,
    weightDecay: 0.5,
    density: 1,
  });
  opt.step();
  assert.deepEqual(Array.from(param), [Math.fround(0.95), Math.fround(-1.9)]);
  // codes 4·ceil(d/8) + stats 8·(floor(d/Q) + 1) + m, v, v̂ 12·d.
  const d = 1000;
  const big = new MicroAdamTheoryCpu(
    [{ param: new Float32Array(d), grad: new Float32Array(d) }],
    { efBlockSize: 64 },
  );
  assert.equal(big.stateBytes(), 4 * 125 + 8 * 16 + 12 * d);

  const r = rng(32);
  const gs = Array.from(
    { length: 12 },
    () => Float32Array.from({ length: 50 }, () => r() - 0.5),
  );
  const o = { lr: 0.01, density: 0.1, efBlockSize: 8 };
  const pa = { param: new Float32Array(50), grad: new Float32Array(50) };
  const a = new MicroAdamTheoryCpu([pa], o);
  const pb = { param: new Float32Array(50), grad: new Float32Array(50) };
  let b = new MicroAdamTheoryCpu([pb], o);
  gs.forEach((g, s) => {
    pa.grad.set(g);
    a.step();
    if (s === 6) {
      const saved = b.stateDict();
      b = new MicroAdamTheoryCpu([pb], o);
      b.loadStateDict(saved);
    }
    pb.grad.set(g);
    b.step();
  });
  assert.deepEqual(pb.param, pa.param);
  assert.equal(a.stateDict().optimizer, "MicroAdamTheory");
  assert.throws(
    () =>
      a.loadStateDict(
        new MicroAdamTheoryCpu([pa], { ...o, efBlockSize: 16 }).stateDict(),
      ),
    CheckpointError,
  );

  for (
    const [bad, msg] of [
      [{ density: 0 }, /^density/],
      [{ density: 2 }, /^density/],
      [{ efBlockSize: 3 }, /^efBlockSize/],
      [{ lr: -1 }, /^lr/],
    ] as const
  ) {
    assert.throws(
      () => new MicroAdamTheoryCpu([pa], bad),
      (e: unknown) => e instanceof InvalidOptionError && msg.test(e.message),
    );
  }
});
