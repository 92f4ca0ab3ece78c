/**
 * Adam, AdamW and AMSGrad CPU references: closed forms, an independent f64
 * computation, the shared optimizer machinery (groups, schedules, skips,
 * state dicts, validation, disposal).
 */

import assert from "node:assert/strict";
import { rng } from "./rng.ts";
import { AdamCpu, AdamWCpu, AMSGradCpu } from "../src/reference/adam.ts";
import type { CpuTensor } from "../src/reference/cpu_optimizer.ts";
import {
  CheckpointError,
  InvalidOptionError,
  NonFiniteGradientError,
  TensorMismatchError,
} from "../src/errors.ts";
import type { OptimizerState } from "../src/core/state.ts";

function randn(r: () => number, n: number, scale = 1): Float32Array {
  return Float32Array.from(
    { length: n },
    () => scale * (r() * 2 - 1),
  );
}

/** Byte-level equality of two state dicts (counters, config and every buffer). */
function assertSameState(a: OptimizerState, b: OptimizerState): void {
  assert.equal(a.optimizer, b.optimizer);
  assert.deepEqual(a.config, b.config);
  assert.deepEqual(
    [a.step, a.calls, a.skipped, a.ring],
    [b.step, b.calls, b.skipped, b.ring],
  );
  assert.equal(a.tensors.length, b.tensors.length);
  a.tensors.forEach((t, i) => {
    assert.deepEqual(
      Object.keys(t.buffers).sort(),
      Object.keys(b.tensors[i].buffers).sort(),
    );
    for (const k of Object.keys(t.buffers)) {
      assert.deepEqual(t.buffers[k], b.tensors[i].buffers[k], `buffer ${k}`);
    }
  });
}

Deno.test("Adam first step moves each coordinate by lr·g/(|g|+ε)", () => {
  const r = rng(11);
  const p0 = randn(r, 1000);
  const g = randn(r, 1000, 0.01);
  g[0] = 1e-9; // |g| near ε: the ε term is visible here
  const param = p0.slice();
  const lr = 0.01;
  const opt = new AdamCpu([{ param, grad: g }], { lr });
  assert.equal(opt.step(), true);
  for (let j = 0; j < param.length; j++) {
    const want = p0[j] - lr * g[j] / (Math.abs(g[j]) + 1e-8);
    assert.ok(
      Math.abs(param[j] - want) <= 3e-7 * (Math.abs(p0[j]) + lr),
      `coord ${j}: ${param[j]} vs ${want}`,
    );
  }
  assert.ok(Math.abs((p0[0] - param[0]) - lr * 0.1 / 1.1) < 1e-7);
  assert.deepEqual(opt.status(), { step: 1, calls: 1, skipped: 0 });
});

Deno.test("AdamW decays by f32(1 − lr·wd); L2 Adam adds wd·p to the gradient", () => {
  const fr = Math.fround;
  const lr = 0.01;
  const wd = 0.1;
  // Zero gradient: AdamW only decays, exactly.
  const pw = new Float32Array([1, -3, 0.25]);
  const p0 = pw.slice();
  new AdamWCpu([{ param: pw, grad: new Float32Array(3) }], {
    lr,
    weightDecay: wd,
  })
    .step();
  for (let j = 0; j < 3; j++) assert.equal(pw[j], fr(p0[j] * fr(1 - lr * wd)));
  // AdamW's default weight decay is 0.01.
  assert.equal(
    new AdamWCpu([{ param: pw, grad: pw.slice() }]).options.weightDecay,
    0.01,
  );
  assert.equal(
    new AdamCpu([{ param: pw, grad: pw.slice() }]).options.weightDecay,
    0,
  );

  // p = 1, g = −0.001, wd = 0.1: L2 sees g + wd·p = 0.099 > 0 and steps down by lr;
  // decoupled decays p, then steps up by lr (sign of g).
  const pl = new Float32Array([1]);
  new AdamCpu([{ param: pl, grad: new Float32Array([-0.001]) }], {
    lr,
    weightDecay: wd,
  }).step();
  assert.ok(Math.abs(pl[0] - (1 - lr)) < 1e-6, `L2: ${pl[0]}`);
  const pd = new Float32Array([1]);
  new AdamCpu([{ param: pd, grad: new Float32Array([-0.001]) }], {
    lr,
    weightDecay: wd,
    decoupledWeightDecay: true,
  }).step();
  assert.ok(
    Math.abs(pd[0] - (1 * (1 - lr * wd) + lr)) < 1e-6,
    `decoupled: ${pd[0]}`,
  );
});

Deno.test("AMSGrad keeps the max of v: its step differs from Adam's by the closed form", () => {
  const lr = 0.01;
  // β as f32, as the optimizers use them (f32(0.999) is off by 1.3e-5 in 1 − β2).
  const [b1, b2, eps] = [Math.fround(0.9), Math.fround(0.999), 1e-8];
  const grads = [1, 0.01]; // v falls at step 2: 0.999·0.001 + 0.001·1e-4 < 0.001
  const pa = new Float32Array([0]);
  const pm = new Float32Array([0]);
  const ga = new Float32Array(1);
  const adam = new AdamCpu([{ param: pa, grad: ga }], { lr });
  const ams = new AMSGradCpu([{ param: pm, grad: ga }], { lr });
  const moves: [number, number][] = [];
  for (const g of grads) {
    ga[0] = g;
    const [a0, m0] = [pa[0], pm[0]];
    adam.step();
    ams.step();
    moves.push([pa[0] - a0, pm[0] - m0]);
  }
  // Step 1 is the same (vmax = v). Step 2 in closed form:
  const m2 = b1 * (1 - b1) * 1 + (1 - b1) * 0.01;
  const v1 = (1 - b2) * 1;
  const v2 = b2 * v1 + (1 - b2) * 1e-4;
  const bc1 = 1 - b1 ** 2;
  const bc2 = 1 - b2 ** 2;
  const adamMove = -lr * (m2 / bc1) / (Math.sqrt(v2 / bc2) + eps);
  const amsMove = -lr * (m2 / bc1) / (Math.sqrt(v1 / bc2) + eps);
  assert.equal(moves[0][0], moves[0][1]);
  // Each move to 2e-5: 1 − β2² in f32 loses digits to cancellation.
  assert.ok(Math.abs(moves[1][0] - adamMove) < 2e-5 * Math.abs(adamMove));
  assert.ok(Math.abs(moves[1][1] - amsMove) < 2e-5 * Math.abs(amsMove));
  // Their ratio cancels the bias correction: sqrt(v2/v1), to 1e-6.
  const ratio = moves[1][1] / moves[1][0];
  assert.ok(Math.abs(ratio - amsMove / adamMove) < 1e-6, `ratio ${ratio}`);
  assert.ok(Math.abs(ratio - Math.sqrt(v2 / v1)) < 1e-6);
  const diff = moves[1][1] - moves[1][0];
  assert.ok(
    Math.abs(diff - (amsMove - adamMove)) < 1e-3 * Math.abs(amsMove - adamMove),
  );
  assert.ok(Math.abs(amsMove) < Math.abs(adamMove));
  // The state holds the max.
  const s = ams.stateDict().tensors[0].buffers;
  const vmax = new Float32Array(s.maxExpAvgSq.buffer)[0];
  const v = new Float32Array(s.expAvgSq.buffer)[0];
  assert.ok(vmax > v);
  assert.ok(Math.abs(vmax - v1) < 1e-9);
  assert.equal(ams.stateBytes(), 12);
  assert.equal(adam.stateBytes(), 8);
});

/** Textbook AdamW / Adam in f64, written independently of the implementation. */
function adamF64(
  p: number[],
  gs: number[][],
  o: {
    lr: number;
    b1: number;
    b2: number;
    eps: number;
    wd: number;
    decoupled: boolean;
  },
): number[] {
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  p = p.slice();
  gs.forEach((g0, s) => {
    const t = s + 1;
    for (let j = 0; j < p.length; j++) {
      let g = g0[j];
      if (!o.decoupled) g += o.wd * p[j];
      else p[j] *= 1 - o.lr * o.wd;
      m[j] = o.b1 * m[j] + (1 - o.b1) * g;
      v[j] = o.b2 * v[j] + (1 - o.b2) * g * g;
      const mh = m[j] / (1 - o.b1 ** t);
      const vh = v[j] / (1 - o.b2 ** t);
      p[j] -= o.lr * mh / (Math.sqrt(vh) + o.eps);
    }
  });
  return p;
}

Deno.test("two steps match an independent f64 computation within 1e-6", () => {
  const p0 = [0.5, -1.0, 2.0, 0.0];
  const gs = [[0.1, -0.2, 0.3, 0.0], [-0.05, 0.4, 0.3, 1e-3]];
  for (
    const [Ctor, decoupled, wd] of [
      [AdamCpu, false, 0],
      [AdamCpu, false, 0.1],
      [AdamWCpu, true, 0.1],
    ] as const
  ) {
    const param = Float32Array.from(p0);
    const grad = new Float32Array(4);
    const opt = new Ctor([{ param, grad }], { lr: 0.01, weightDecay: wd });
    for (const g of gs) {
      grad.set(g);
      opt.step();
    }
    const want = adamF64(p0, gs, {
      lr: 0.01,
      b1: 0.9,
      b2: 0.999,
      eps: 1e-8,
      wd,
      decoupled,
    });
    for (let j = 0; j < 4; j++) {
      assert.ok(
        Math.abs(param[j] - want[j]) < 1e-6,
        `${Ctor.name} wd ${wd} coord ${j}: ${param[j]} vs ${want[j]}`,
      );
    }
  }
  // Hand check of the f64 model itself, AdamW coordinate 0 (g = 0.1 then −0.05):
  // t=1: m̂ = 0.1, v̂ = 0.01, p = 0.5·0.999 − 0.01·0.1/(0.1 + ε);
  // t=2: m = 0.9·0.01 + 0.1·(−0.05) = 0.004, v = 0.999·1e-5 + 0.001·0.0025 = 1.249e-5.
  const pAdamW = adamF64(p0, gs, {
    lr: 0.01,
    b1: 0.9,
    b2: 0.999,
    eps: 1e-8,
    wd: 0.1,
    decoupled: true,
  });
  const m2 = 0.9 * 0.01 + 0.1 * -0.05; // 0.004
  const v2 = 0.999 * 0.001 * 0.01 + 0.001 * 0.0025; // 1.249e-5
  const step2 = 0.01 * (m2 / 0.19) / (Math.sqrt(v2 / (1 - 0.999 ** 2)) + 1e-8);
  const step1 = 0.01 * 0.1 / (0.1 + 1e-8);
  const hand = (0.5 * 0.999 - step1) * 0.999 - step2;
  assert.ok(Math.abs(pAdamW[0] - hand) < 1e-12);
});

Deno.test("non-finite gradients: skip leaves state bit-identical; error throws", () => {
  const r = rng(12);
  const param = randn(r, 16);
  const grad = randn(r, 16);
  const other = { param: randn(r, 4), grad: randn(r, 4), name: "bias" };
  const opt = new AMSGradCpu([{ param, grad, name: "w" }, other], { lr: 0.1 });
  opt.step();
  const before = opt.stateDict();
  const p = param.slice();
  const q = other.param.slice();
  for (const bad of [NaN, Infinity, -Infinity]) {
    other.grad[2] = bad;
    assert.equal(opt.step(), false);
    assertSameState(
      { ...opt.stateDict(), calls: before.calls, skipped: before.skipped },
      before,
    );
    assert.deepEqual(param, p);
    assert.deepEqual(other.param, q);
  }
  assert.deepEqual(opt.status(), {
    step: 1,
    calls: 4,
    skipped: 3,
    lastNonFiniteTensor: "bias",
  });

  const strict = new AdamCpu([{ param: p, grad, name: "w" }, other], {
    nonFinite: "error",
  });
  const s0 = strict.stateDict();
  assert.throws(
    () => strict.step(),
    (e: unknown) =>
      e instanceof NonFiniteGradientError && e.tensor === "bias" &&
      e.call === 1,
  );
  assert.deepEqual(strict.status(), {
    step: 0,
    calls: 1,
    skipped: 1,
    lastNonFiniteTensor: "bias",
  });
  assertSameState({ ...strict.stateDict(), calls: 0, skipped: 0 }, s0);
  other.grad[2] = 0.5;
  assert.equal(strict.step(), true);
  assert.deepEqual(strict.status(), {
    step: 1,
    calls: 2,
    skipped: 1,
    lastNonFiniteTensor: "bias",
  });
});

Deno.test("groups use their own lr and weight decay; mutations apply next step", () => {
  const a = {
    param: new Float32Array([0, 0]),
    grad: new Float32Array([1, -1]),
  };
  const b = { param: new Float32Array([0]), grad: new Float32Array([1]) };
  const opt = new AdamCpu([{ params: [a], lr: 0.1 }, { params: [b] }], {
    lr: 0.01,
  });
  opt.step();
  assert.ok(
    Math.abs(a.param[0] + 0.1) < 1e-6 && Math.abs(a.param[1] - 0.1) < 1e-6,
  );
  assert.ok(Math.abs(b.param[0] + 0.01) < 1e-6);
  opt.paramGroups[1].lr = 0.5; // constant grad: each step moves by lr
  opt.step();
  assert.ok(Math.abs(b.param[0] + 0.51) < 1e-5, `${b.param[0]}`);
  assert.ok(Math.abs(a.param[0] + 0.2) < 1e-5);
});

Deno.test("schedule gets the 1-based call number (skips included) and scales lr", () => {
  const seen: number[] = [];
  const param = new Float32Array([0]);
  const grad = new Float32Array([1]);
  const opt = new AdamCpu([{ param, grad }], {
    lr: 0.1,
    schedule: (s) => {
      seen.push(s);
      return 1 / s;
    },
  });
  const moves: number[] = [];
  for (let i = 0; i < 4; i++) {
    grad[0] = i === 1 ? NaN : 1;
    const before = param[0];
    opt.step();
    moves.push(before - param[0]);
  }
  assert.deepEqual(seen, [1, 2, 3, 4]);
  // Constant gradient: each applied step moves by lr·factor (bias correction exact).
  [0.1, 0, 0.1 / 3, 0.1 / 4].forEach((want, i) =>
    assert.ok(Math.abs(moves[i] - want) < 1e-6, `call ${i + 1}: ${moves[i]}`)
  );
  // A schedule producing a negative lr is an option error, and nothing is counted.
  const bad = new AdamCpu([{ param, grad }], { schedule: () => -1 });
  assert.throws(() => bad.step(), InvalidOptionError);
  assert.deepEqual(bad.status(), { step: 0, calls: 0, skipped: 0 });
});

function trajectory(seed: number, steps: number, n: number): Float32Array[] {
  const r = rng(seed);
  return Array.from({ length: steps }, () => randn(r, n, 0.1));
}

Deno.test("stateDict/loadStateDict round trip is bit-exact (20 + load + 10 == 30)", () => {
  for (const Ctor of [AdamCpu, AdamWCpu, AMSGradCpu]) {
    const gs = trajectory(13, 30, 50);
    const init = randn(rng(14), 50);
    const full = { param: init.slice(), grad: new Float32Array(50) };
    const ref = new Ctor([full], { lr: 0.01, weightDecay: 0.05 });
    const part = { param: init.slice(), grad: new Float32Array(50) };
    const first = new Ctor([part], { lr: 0.01, weightDecay: 0.05 });
    for (let s = 0; s < 30; s++) {
      full.grad.set(gs[s]);
      ref.step();
      if (s < 20) {
        part.grad.set(gs[s]);
        first.step();
      }
    }
    const saved = first.stateDict();
    first.dispose();
    const resumed = { param: part.param.slice(), grad: new Float32Array(50) };
    const second = new Ctor([resumed], { lr: 0.01, weightDecay: 0.05 });
    second.loadStateDict(saved);
    assert.deepEqual(second.status(), { step: 20, calls: 20, skipped: 0 });
    for (let s = 20; s < 30; s++) {
      resumed.grad.set(gs[s]);
      second.step();
    }
    assert.deepEqual(resumed.param, full.param, Ctor.name);
    assertSameState(second.stateDict(), ref.stateDict());
  }
});

Deno.test("loadStateDict rejects another optimizer, config or shape and keeps its state", () => {
  const t = () => ({
    param: new Float32Array(8).fill(1),
    grad: new Float32Array(8).fill(0.5),
  });
  const opt = new AdamCpu([t()]);
  opt.step();
  const mine = opt.stateDict();
  const tryLoad = (s: unknown, msg: RegExp) => {
    assert.throws(
      () => opt.loadStateDict(s as OptimizerState),
      (e: unknown) => e instanceof CheckpointError && msg.test(e.message),
    );
    assertSameState(opt.stateDict(), mine);
  };
  const w = new AdamWCpu([t()]);
  w.step();
  tryLoad(w.stateDict(), /optimizer mismatch/);
  const ams = new AdamCpu([t()], { amsgrad: true });
  tryLoad(
    { ...ams.stateDict(), optimizer: "Adam" },
    /config mismatch on "amsgrad"/,
  );
  tryLoad(
    new AdamCpu([{ param: new Float32Array(9), grad: new Float32Array(9) }])
      .stateDict(),
    /tensor 0 "0" has 8 elements, the state's tensor "0" has 9/,
  );
  tryLoad(new AdamCpu([t(), t()]).stateDict(), /tensor count/);
  const short = opt.stateDict();
  short.tensors[0].buffers.expAvg = new Uint8Array(31);
  tryLoad(short, /"expAvg" should be 32 bytes/);
  const missing = opt.stateDict();
  delete (missing.tensors[0].buffers as Record<string, Uint8Array>).expAvgSq;
  tryLoad(missing, /"expAvgSq" is missing/);
  const negative = { ...opt.stateDict(), step: -1 };
  tryLoad(negative, /step/);
  tryLoad(null, /expected an optimizer state/);
  tryLoad({ optimizer: "Adam", tensors: [] }, /malformed|config/);
  // A corrupted value in a valid-shaped state loads (it is just numbers), so
  // the stored bytes really travel: change one and read it back.
  const edited = opt.stateDict();
  edited.tensors[0].buffers.expAvg[0] ^= 1;
  opt.loadStateDict(edited);
  assert.deepEqual(
    opt.stateDict().tensors[0].buffers.expAvg,
    edited.tensors[0].buffers.expAvg,
  );
});

Deno.test("bad options throw InvalidOptionError naming the option", () => {
  const t = [{ param: new Float32Array(1), grad: new Float32Array(1) }];
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ lr: -1 }, /^lr/],
    [{ lr: NaN }, /^lr/],
    [{ betas: [1, 0.999] }, /^betas/],
    [{ betas: [0.9, -0.1] }, /^betas/],
    [{ betas: [0.9] }, /^betas/],
    [{ eps: -1 }, /^eps/],
    [{ weightDecay: -0.1 }, /^weightDecay/],
    [{ nonFinite: "ignore" }, /^nonFinite/],
    [{ schedule: 3 }, /^schedule/],
  ];
  for (const [o, msg] of bad) {
    for (const Ctor of [AdamCpu, AdamWCpu, AMSGradCpu]) {
      assert.throws(
        () => new Ctor(t, o),
        (e: unknown) => e instanceof InvalidOptionError && msg.test(e.message),
        `${Ctor.name} ${JSON.stringify(o)}`,
      );
    }
  }
  assert.throws(() => new AdamCpu([]), InvalidOptionError);
  assert.throws(() => new AdamCpu([{ params: t, lr: -2 }]), /group 0 lr/);
});

Deno.test("tensor validation names the tensor and what was expected", () => {
  const ok = { param: new Float32Array(2), grad: new Float32Array(2) };
  assert.throws(
    () =>
      new AdamCpu([ok, {
        param: new Float32Array(3),
        grad: new Float32Array(2),
        name: "emb",
      }]),
    (e: unknown) =>
      e instanceof TensorMismatchError &&
      /tensor 1 \("emb"\)/.test(e.message) &&
      /3 elements.*2/.test(e.message),
  );
  assert.throws(
    () =>
      new AdamCpu([
        { param: new Uint16Array(2), grad: new Uint16Array(2) } as CpuTensor,
      ]),
    (e: unknown) =>
      e instanceof TensorMismatchError && /Float32Array/.test(e.message) &&
      /Uint16Array/.test(e.message),
  );
  assert.throws(
    () =>
      new AdamCpu([{ param: new Float32Array(0), grad: new Float32Array(0) }]),
    /at least one element/,
  );
  // A tensor resized after construction is caught at step().
  const t = { param: new Float32Array(2), grad: new Float32Array(2) };
  const opt = new AdamCpu([t]);
  t.grad = new Float32Array(5);
  assert.throws(() => opt.step(), TensorMismatchError);
  t.grad = new Float32Array(2);
  opt.paramGroups[0].params.push({
    param: new Float32Array(1),
    grad: new Float32Array(1),
  });
  assert.throws(() => opt.step(), /expected 1 tensors/);
  opt.paramGroups[0].params.pop();
  assert.equal(opt.step(), true);
});

Deno.test("dispose drops the state and further use throws", () => {
  const t = { param: new Float32Array(2), grad: new Float32Array(2) };
  const opt = new AdamCpu([t]);
  {
    using scoped = new AdamWCpu([t]);
    scoped.step();
  }
  opt.dispose();
  opt.dispose();
  assert.throws(() => opt.step(), /disposed/);
  assert.throws(() => opt.stateDict(), /disposed/);
  assert.throws(() => opt.stateBytes(), /disposed/);
});
