/**
 * The ablations of the CPU references (src/reference/ablations.ts) and the
 * quantized error feedback they use (src/reference/error_feedback.ts):
 * defaults bit-identical to the references, each ablated part against a
 * closed form, validation.
 */

import assert from "node:assert/strict";
import { rng } from "./rng.ts";
import {
  type CompressionObservation,
  MicroAdamAblationCpu,
  MicroAdamTheoryAblationCpu,
} from "../src/reference/ablations.ts";
import {
  errorFeedbackState,
  QuantizedErrorFeedback,
  resolveQuantizerSpec,
} from "../src/reference/error_feedback.ts";
import { MicroAdamCpu } from "../src/reference/microadam.ts";
import { MicroAdamTheoryCpu } from "../src/reference/microadam_theory.ts";
import { AMSGradCpu } from "../src/reference/adam.ts";
import type { CpuTensor } from "../src/reference/cpu_optimizer.ts";
import { cosineDecay } from "../src/core/schedule.ts";
import { InvalidOptionError } from "../src/errors.ts";

interface Steppable {
  step(): boolean;
  stateDict(): { tensors: { buffers: Record<string, Uint8Array> }[] };
}

/** Two optimizers fed the same gradients; params and named buffers must agree bit for bit. */
function assertTwins(
  make: (ts: CpuTensor[]) => [Steppable, Steppable],
  sizes: number[],
  steps: number,
  seed: number,
): void {
  const u = rng(seed);
  const a = sizes.map((d) => ({
    param: new Float32Array(d).map(() => u() - 0.5),
    grad: new Float32Array(d),
  }));
  const b = a.map((t) => ({ param: t.param.slice(), grad: t.grad.slice() }));
  const [oa, ob] = make([...a, ...b]);
  for (let s = 0; s < steps; s++) {
    a.forEach((t, i) => {
      // Heavy-tailed gradients: a few large entries, so top-k and EF both act.
      const g = t.grad.map(() => (u() - 0.5) * (u() < 0.05 ? 30 : 1));
      t.grad.set(g);
      b[i].grad.set(g);
    });
    oa.step();
    ob.step();
  }
  a.forEach((t, i) => {
    assert.deepEqual(
      new Uint32Array(t.param.buffer),
      new Uint32Array(b[i].param.buffer),
      `tensor ${i}: params differ`,
    );
  });
  const sa = oa.stateDict().tensors;
  const sb = ob.stateDict().tensors;
  sa.forEach((t, i) => {
    for (const [k, bytes] of Object.entries(sb[i].buffers)) {
      assert.deepEqual(t.buffers[k], bytes, `tensor ${i}: buffer ${k} differs`);
    }
  });
}

Deno.test("MicroAdamAblationCpu without ablations is MicroAdamCpu, bit for bit", () => {
  const opts = {
    lr: 0.01,
    density: 0.03,
    window: 4,
    topkBlockSize: 256,
    efBlockSize: 64,
    schedule: cosineDecay(40),
  };
  assertTwins(
    (ts) => [
      new MicroAdamAblationCpu(
        [{ params: ts.slice(0, 2), weightDecay: 0.1 }],
        opts,
      ),
      new MicroAdamCpu([{ params: ts.slice(2), weightDecay: 0.1 }], opts),
    ],
    [700, 130],
    40,
    1,
  );
});

Deno.test("MicroAdamTheoryAblationCpu without ablations is MicroAdamTheoryCpu, bit for bit", () => {
  const opts = { lr: 0.01, density: 0.05, efBlockSize: 64, weightDecay: 0.1 };
  assertTwins(
    (ts) => [
      new MicroAdamTheoryAblationCpu(ts.slice(0, 2), opts),
      new MicroAdamTheoryCpu(ts.slice(2), opts),
    ],
    [500, 37],
    40,
    2,
  );
});

Deno.test("errorFeedback 'none': a coordinate top-k never picks never moves; the observer sees ω = 1", () => {
  for (
    const make of [
      (t: CpuTensor, observer: (o: CompressionObservation) => void) =>
        new MicroAdamAblationCpu([t], {
          lr: 0.1,
          density: 0.5,
          errorFeedback: "none",
          observer,
        }),
      (t: CpuTensor, observer: (o: CompressionObservation) => void) =>
        new MicroAdamTheoryAblationCpu([t], {
          lr: 0.1,
          density: 0.5,
          errorFeedback: "none",
          observer,
        }),
    ]
  ) {
    const t = { param: new Float32Array(2), grad: new Float32Array([1, 0.9]) };
    const seen: CompressionObservation[] = [];
    const opt = make(t, (o) => seen.push(o));
    for (let s = 0; s < 20; s++) opt.step();
    assert.equal(t.param[1], 0, "the 0.9 is never applied");
    assert.ok(t.param[0] < -1);
    assert.equal(seen.length, 20);
    for (const o of seen) {
      assert.deepEqual(Array.from(o.input), [1, Math.fround(0.9)]);
      assert.deepEqual(Array.from(o.residual), [0, Math.fround(0.9)]);
      assert.deepEqual(Array.from(o.stored), [0, 0]);
    }
  }
});

Deno.test("shipped error feedback: the same 0.9 is applied once it has accumulated", () => {
  const t = { param: new Float32Array(2), grad: new Float32Array([1, 0.9]) };
  const seen: CompressionObservation[] = [];
  const opt = new MicroAdamAblationCpu([t], {
    lr: 0.1,
    density: 0.5,
    efBlockSize: 2,
    observer: (o) => seen.push(o),
  });
  opt.step();
  // Step 1 keeps 1 and stores 0.9 (min 0, max ≥ 0.9 in bf16, 4-bit code).
  assert.ok(Math.abs(seen[0].stored[1] - 0.9) < 0.9 / 15);
  opt.step();
  // Step 2 sees 0.9 + e ≈ 1.8 > 1: coordinate 1 is selected and moves.
  assert.ok(seen[1].input[1] > 1.7);
  assert.ok(t.param[1] < 0);
});

Deno.test("QuantizedErrorFeedback: 32 bits keep the residual exactly; b bits round to the nearest of 2^b levels", () => {
  const u = rng(9);
  const r = new Float32Array(300).map(() => (u() - 0.5) * 8);
  const exact = resolveQuantizerSpec({ bits: 32, bucketSize: 1 });
  const ef32 = new QuantizedErrorFeedback(
    exact,
    errorFeedbackState(300, exact),
  );
  ef32.store(r);
  assert.deepEqual(ef32.values(300), r);
  for (const bits of [1, 2, 3, 4, 5, 8, 13, 16]) {
    for (const bucketSize of [1, 7, 64, 1000]) {
      const spec = resolveQuantizerSpec({ bits, bucketSize });
      const ef = new QuantizedErrorFeedback(
        spec,
        errorFeedbackState(300, spec),
      );
      ef.store(r);
      const e = ef.values(300);
      for (let start = 0; start < 300; start += bucketSize) {
        const part = r.subarray(start, Math.min(300, start + bucketSize));
        const mn = Math.min(...part);
        const mx = Math.max(...part);
        const unit = (mx - mn) / (2 ** bits - 1);
        part.forEach((x, i) => {
          const got = e[start + i];
          // Nearest level: off by at most half a unit (plus f32 rounding).
          assert.ok(
            Math.abs(got - x) <= unit / 2 * (1 + 1e-5) + 1e-6,
            `bits ${bits}, bucket ${bucketSize}, elem ${
              start + i
            }: ${got} vs ${x} (unit ${unit})`,
          );
          // And on the grid: (e − mn)/unit is an integer in 0..L, up to the
          // f32 rounding of e (a few ulps of the bucket's range, in units).
          if (unit > 0) {
            const q = (got - mn) / unit;
            const slack = 1e-3 + 4 * 2 ** -23 * Math.max(-mn, mx) / unit;
            assert.ok(Math.abs(q - Math.round(q)) < slack, `q ${q}`);
            assert.ok(q > -slack && q < 2 ** bits - 1 + slack);
          }
        });
      }
    }
  }
});

Deno.test("QuantizedErrorFeedback: stochastic rounding is unbiased and picks a neighbouring level", () => {
  const spec = resolveQuantizerSpec({
    bits: 1,
    bucketSize: 3,
    rounding: "stochastic",
    seed: 5,
  });
  const ef = new QuantizedErrorFeedback(spec, errorFeedbackState(3, spec));
  const r = new Float32Array([0, 0.3, 1]); // levels 0 and 1: 0.3 goes up 30 % of the time
  let sum = 0;
  const n = 20000;
  for (let i = 0; i < n; i++) {
    ef.store(r);
    const e = ef.values(3);
    assert.equal(e[0], 0);
    assert.equal(e[2], 1);
    assert.ok(e[1] === 0 || e[1] === 1);
    sum += e[1];
  }
  // Binomial(n, 0.3): standard deviation of the mean ≈ 0.0032; 5 sigma.
  assert.ok(Math.abs(sum / n - 0.3) < 0.016, `mean ${sum / n}`);
  // Nearest rounding would give 0 every time.
  const near = resolveQuantizerSpec({ bits: 1, bucketSize: 3 });
  const efn = new QuantizedErrorFeedback(near, errorFeedbackState(3, near));
  efn.store(r);
  assert.equal(efn.values(3)[1], 0);
});

Deno.test("windowMax: the denominator uses the largest window sum seen (closed form, f64)", () => {
  const b1 = Math.fround(0.9);
  const b2 = Math.fround(0.999);
  const lr = 0.01;
  const gs = [10, 1, 1, 1, 1];
  const t = { param: new Float32Array(1), grad: new Float32Array(1) };
  const plain = { param: new Float32Array(1), grad: new Float32Array(1) };
  const opt = new MicroAdamAblationCpu([t], {
    lr,
    density: 1,
    window: 2,
    windowMax: true,
    eps: 2 ** -126, // the smallest ε the optimizers take: negligible here
  });
  const ref = new MicroAdamCpu([plain], {
    lr,
    density: 1,
    window: 2,
    eps: 2 ** -126,
  });
  let p = 0;
  let sMax = 0;
  for (let s = 1; s <= gs.length; s++) {
    t.grad[0] = plain.grad[0] = gs[s - 1];
    opt.step();
    ref.step();
    // Window of the last two gradients, decayed by age.
    const cur = gs[s - 1];
    const prev = s > 1 ? gs[s - 2] : 0;
    const M = cur + b1 * prev;
    const S = cur * cur + b2 * prev * prev;
    sMax = Math.max(sMax, S);
    const c1 = (1 - b1) / (1 - b1 ** s);
    const c2 = (1 - b2) / (1 - b2 ** s);
    p -= lr * c1 * M / Math.sqrt(c2 * sMax);
    assert.ok(
      Math.abs(t.param[0] - p) < 1e-6 * Math.max(1, Math.abs(p)),
      `step ${s}: ${t.param[0]} vs ${p}`,
    );
  }
  // Once the 10 has left the window, plain MicroAdam takes larger steps.
  assert.ok(plain.param[0] < t.param[0] - 0.01);
});

Deno.test("theory ablation: no max + bias correction + no EF at density 1 is Adam with ε under the root", () => {
  const b1 = Math.fround(0.9);
  const b2 = Math.fround(0.999);
  const lr = 0.05;
  const eps = 1e-6;
  const u = rng(4);
  const d = 5;
  const t = { param: new Float32Array(d), grad: new Float32Array(d) };
  const opt = new MicroAdamTheoryAblationCpu([t], {
    lr,
    eps,
    density: 1,
    errorFeedback: "none",
    amsgradMax: false,
    biasCorrection: true,
  });
  const m = new Float64Array(d);
  const v = new Float64Array(d);
  const p = new Float64Array(d);
  for (let s = 1; s <= 30; s++) {
    const g = Float32Array.from({ length: d }, () => (u() - 0.5) * 3);
    t.grad.set(g);
    opt.step();
    for (let j = 0; j < d; j++) {
      m[j] = b1 * m[j] + (1 - b1) * g[j];
      v[j] = b2 * v[j] + (1 - b2) * g[j] ** 2;
      p[j] -= lr * (m[j] / (1 - b1 ** s)) /
        Math.sqrt(v[j] / (1 - b2 ** s) + eps);
    }
  }
  for (let j = 0; j < d; j++) {
    assert.ok(Math.abs(t.param[j] - p[j]) < 1e-5, `${t.param[j]} vs ${p[j]}`);
  }
});

Deno.test("theory ablation: with the max and bias correction at density 1 it tracks AMSGradCpu", () => {
  const u = rng(6);
  const d = 50;
  const a = { param: new Float32Array(d), grad: new Float32Array(d) };
  const b = { param: new Float32Array(d), grad: new Float32Array(d) };
  const opt = new MicroAdamTheoryAblationCpu([a], {
    lr: 0.01,
    eps: 2 ** -126, // the smallest ε the optimizers take: negligible here
    density: 1,
    biasCorrection: true,
  });
  const ams = new AMSGradCpu([b], { lr: 0.01, eps: 2 ** -126 });
  for (let s = 0; s < 50; s++) {
    const g = Float32Array.from({ length: d }, () => (u() - 0.5) * 2);
    a.grad.set(g);
    b.grad.set(g);
    opt.step();
    ams.step();
  }
  for (let j = 0; j < d; j++) {
    assert.ok(Math.abs(a.param[j] - b.param[j]) < 1e-5);
  }
});

Deno.test("ablations: state dicts round-trip and the run continues identically", () => {
  const u = rng(8);
  const d = 200;
  const make = (t: CpuTensor) =>
    new MicroAdamAblationCpu([t], {
      lr: 0.01,
      density: 0.05,
      efBlockSize: 32,
      errorFeedback: { bits: 3, bucketSize: 50 },
      windowMax: true,
    });
  const a = { param: new Float32Array(d), grad: new Float32Array(d) };
  const oa = make(a);
  const feed = () => Float32Array.from({ length: d }, () => u() - 0.5);
  for (let s = 0; s < 7; s++) {
    a.grad.set(feed());
    oa.step();
  }
  const b = { param: a.param.slice(), grad: new Float32Array(d) };
  const ob = make(b);
  ob.loadStateDict(oa.stateDict());
  assert.equal(oa.stateDict().config.errorFeedback, "3bit/50/nearest");
  for (let s = 0; s < 5; s++) {
    const g = feed();
    a.grad.set(g);
    b.grad.set(g);
    oa.step();
    ob.step();
  }
  assert.deepEqual(a.param, b.param);
  assert.throws(
    () =>
      new MicroAdamAblationCpu([b], {
        density: 0.05,
        efBlockSize: 32,
        windowMax: true,
      }).loadStateDict(oa.stateDict()),
    /errorFeedback/,
  );
});

Deno.test("ablations: bad options are InvalidOptionErrors naming the key and the value", () => {
  const t = () => ({ param: new Float32Array(4), grad: new Float32Array(4) });
  const cases: [() => unknown, RegExp][] = [
    [
      () =>
        new MicroAdamAblationCpu([t()], { errorFeedback: "dense" as "none" }),
      /errorFeedback: expected "shipped", "none" or .* got "dense"/,
    ],
    [
      () =>
        new MicroAdamTheoryAblationCpu([t()], {
          errorFeedback: "shipped" as "none",
        }),
      /errorFeedback: expected "none" or .* got "shipped"/,
    ],
    [
      () =>
        new MicroAdamAblationCpu([t()], {
          errorFeedback: { bits: 0, bucketSize: 4 },
        }),
      /errorFeedback\.bits: expected an integer in 1\.\.16, or 32 .* got 0/,
    ],
    [
      () =>
        new MicroAdamAblationCpu([t()], {
          errorFeedback: { bits: 4, bucketSize: 0.5 },
        }),
      /errorFeedback\.bucketSize: expected an integer >= 1, got 0\.5/,
    ],
    [
      () =>
        new MicroAdamTheoryAblationCpu([t()], {
          errorFeedback: {
            bits: 4,
            bucketSize: 4,
            rounding: "up" as "nearest",
          },
        }),
      /errorFeedback\.rounding: expected "nearest" or "stochastic", got "up"/,
    ],
    [
      () =>
        new MicroAdamAblationCpu([t()], {
          windowMax: "yes" as unknown as boolean,
        }),
      /windowMax: expected true or false, got "yes"/,
    ],
    [
      () =>
        new MicroAdamTheoryAblationCpu([t()], {
          amsgradMax: 1 as unknown as boolean,
        }),
      /amsgradMax: expected true or false, got 1/,
    ],
    [
      () =>
        new MicroAdamTheoryAblationCpu([t()], {
          biasCorrection: null as unknown as boolean,
        }),
      /biasCorrection: got null; leave the option out for its default/,
    ],
    [
      () =>
        new MicroAdamAblationCpu([t()], {
          observer: 3 as unknown as () => void,
        }),
      /observer: expected a function .* got 3/,
    ],
    [
      () => new MicroAdamAblationCpu([t()], { dtype: "bf16" }),
      /dtype: MicroAdamAblationCpu runs in f32 only, got "bf16"/,
    ],
    [
      () => new MicroAdamAblationCpu([t()], { density: 2 }),
      /density: expected a number in \(0, 1\], got 2/,
    ],
  ];
  for (const [make, message] of cases) {
    assert.throws(
      make,
      (e: unknown) =>
        e instanceof InvalidOptionError && message.test(e.message),
      String(message),
    );
  }
});
