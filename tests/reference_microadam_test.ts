/**
 * MicroAdamCpu beyond the golden data: f32 mode against Adam, the window's
 * closed-form effect, the top-k tie rule, error feedback, the quantizer and
 * its statistics, state size and round trip, validation.
 */

import assert from "node:assert/strict";
import { rng } from "./rng.ts";
import { MicroAdamCpu, topkBlock } from "../src/reference/microadam.ts";
import { AdamCpu } from "../src/reference/adam.ts";
import type { CpuTensor } from "../src/reference/cpu_optimizer.ts";
import {
  bf16Bits,
  bf16ToNumber,
  roundBf16,
  toBf16Array,
} from "../src/numeric/bf16.ts";
import { getCode } from "../src/numeric/pack.ts";
import { blockK, blockWindowOffset } from "../src/core/geometry.ts";
import {
  CheckpointError,
  InvalidOptionError,
  TensorMismatchError,
} from "../src/errors.ts";
import type { OptimizerState } from "../src/core/state.ts";
import { u32View } from "../src/core/state_checks.ts";

/** Block-local indices of window row `slot` of tensor `i`, block after block. */
function windowRow(opt: MicroAdamCpu, i: number, slot: number): number[] {
  const g = opt.geometry[i];
  const win = u32View(opt.stateDict().tensors[i].buffers.window);
  const out: number[] = [];
  for (let b = 0; b < g.blocks; b++) {
    const kb = blockK(g, b);
    const base = blockWindowOffset(g, b) + slot * kb;
    for (let n = 0; n < kb; n++) out.push(win[base + n] & 0xffff);
  }
  return out;
}

/** EF value of every element: dequantized from codes and stats as step 1 does. */
function efValues(opt: MicroAdamCpu, i: number): number[] {
  const t = opt.stateDict().tensors[i];
  const codes = u32View(t.buffers.codes);
  const stats = u32View(t.buffers.stats);
  const Q = opt.options.efBlockSize;
  return Array.from({ length: t.length }, (_, j) => {
    const s = stats[Math.floor(j / Q)];
    const mn = bf16ToNumber(s & 0xffff);
    const u = Math.fround(Math.fround(bf16ToNumber(s >>> 16) - mn) / 15);
    return getCode(codes, j) * u + mn;
  });
}

function assertSameState(a: OptimizerState, b: OptimizerState): void {
  assert.deepEqual(
    [a.step, a.calls, a.skipped, a.ring],
    [b.step, b.calls, b.skipped, b.ring],
  );
  assert.deepEqual(a.config, b.config);
  a.tensors.forEach((t, i) => {
    for (const k of Object.keys(t.buffers)) {
      assert.deepEqual(t.buffers[k], b.tensors[i].buffers[k], `buffer ${k}`);
    }
  });
}

Deno.test("f32 mode, density 1, t ≤ window: the moves equal Adam's", () => {
  const r = rng(21);
  const d = 300;
  const sign = Float32Array.from({ length: d }, () => (r() < 0.5 ? -1 : 1));
  const init = Float32Array.from({ length: d }, () => r() * 2 - 1);
  const pm = init.slice();
  const pa = init.slice();
  const grad = new Float32Array(d);
  const lr = 1e-3;
  const micro = new MicroAdamCpu([{ param: pm, grad }], {
    lr,
    density: 1,
    window: 10,
    topkBlockSize: 128, // several blocks and a tail
  });
  const adam = new AdamCpu([{ param: pa, grad }], { lr });
  for (let t = 1; t <= 10; t++) {
    // bf16-exact gradients: the window stores bf16, Adam stores f32.
    for (let j = 0; j < d; j++) grad[j] = roundBf16(sign[j] * (0.5 + r()));
    const bm = pm.slice();
    const ba = pa.slice();
    micro.step();
    adam.step();
    for (let j = 0; j < d; j++) {
      const mm = pm[j] - bm[j];
      const ma = pa[j] - ba[j];
      assert.ok(
        Math.abs(mm - ma) <= 1e-6 * Math.abs(ma) + 2.5e-7 * Math.abs(bm[j]),
        `t ${t} coord ${j}: micro ${mm} adam ${ma}`,
      );
    }
    // Keep both on the same parameters so only the update rule is compared.
    pa.set(pm);
  }
});

Deno.test("window effect: constant gradient, step → (1 − β1^m)/sqrt(1 − β2^m) × Adam's", () => {
  const m = 10;
  const lr = 1e-3;
  const param = new Float32Array(2);
  const grad = new Float32Array([0.5, -0.5]);
  const opt = new MicroAdamCpu([{ param, grad }], {
    lr,
    window: m,
    density: 1,
  });
  const b1 = Math.fround(0.9);
  const b2 = Math.fround(0.999);
  const checks = new Map<number, number>();
  for (let t = 1; t <= 5000; t++) {
    param.fill(0); // measure the move at 0, where f32 loses nothing
    opt.step();
    if ([1, 10, 11, 200, 5000].includes(t)) checks.set(t, -param[0] / lr);
    assert.equal(param[1], -param[0]);
  }
  // Closed form: moves are lr × (1 − β1^min(t,m))/(1 − β1^t) / sqrt((1 − β2^min(t,m))/(1 − β2^t)).
  for (const [t, got] of checks) {
    const w = Math.min(t, m);
    const want = (1 - b1 ** w) / (1 - b1 ** t) /
      Math.sqrt((1 - b2 ** w) / (1 - b2 ** t));
    assert.ok(Math.abs(got - want) < 2e-4 * want, `t ${t}: ${got} vs ${want}`);
  }
  assert.ok(Math.abs(checks.get(1)! - 1) < 1e-5); // Adam's first step: lr
  assert.ok(Math.abs(checks.get(10)! - 1) < 1e-4); // still Adam at t = m
  const limit = (1 - 0.9 ** m) / Math.sqrt(1 - 0.999 ** m); // ≈ 6.53
  assert.ok(Math.abs(limit - 6.53) < 0.01);
  assert.ok(Math.abs(checks.get(5000)! - limit) < 0.05, `${checks.get(5000)}`);
});

Deno.test("top-k ties: strictly larger first, then equal |a| in ascending index", () => {
  assert.deepEqual(
    Array.from(topkBlock(new Float32Array([1, -2, 2, 0.5, -2, 2]), 2)),
    [1, 2],
  );
  assert.deepEqual(
    Array.from(topkBlock(new Float32Array([2, -2, 3, 0.5, -3, 2]), 3)),
    [2, 4, 0],
  );
  assert.deepEqual(
    Array.from(topkBlock(new Float32Array([0, 0, 0, 0]), 2)),
    [0, 1],
  );
  // Through the optimizer: the row written, the values, and who moves.
  const param = new Float32Array(8);
  const grad = new Float32Array([2, -3, 3, 1, -3, 3, 0.5, 3]);
  const opt = new MicroAdamCpu([{ param, grad }], {
    lr: 0.1,
    density: 3 / 8,
    window: 2,
  });
  opt.step();
  assert.deepEqual(windowRow(opt, 0, 0), [1, 2, 4]);
  const win = u32View(opt.stateDict().tensors[0].buffers.window);
  assert.deepEqual(
    Array.from(win.subarray(0, 3), (e) => bf16ToNumber(e >>> 16)),
    [-3, 3, -3],
  );
  const moved = Array.from(param, (p, j) => (p !== 0 ? j : -1)).filter((j) =>
    j >= 0
  );
  assert.deepEqual(moved, [1, 2, 4]);
});

Deno.test("error feedback: unselected coordinates accumulate and get selected later", () => {
  const d = 100;
  const param = new Float32Array(d);
  const grad = new Float32Array(d).fill(0.01);
  grad[0] = 1;
  const opt = new MicroAdamCpu([{ param, grad }], {
    lr: 0.01,
    density: 0.01, // k = 1
    window: 4,
  });
  opt.step();
  assert.deepEqual(windowRow(opt, 0, 0), [0]);
  assert.deepEqual(
    Array.from(param, (p, j) => (p !== 0 ? j : -1)).filter((j) => j >= 0),
    [0],
  );
  // The residual sits in the EF: 0 at the selected coordinate, 0.01 elsewhere
  // (within half a quantization step).
  const e = efValues(opt, 0);
  assert.ok(Math.abs(e[0]) < 0.01 / 30 + 1e-9);
  for (let j = 1; j < d; j++) {
    assert.ok(Math.abs(e[j] - 0.01) < 0.01 / 30 + 1e-6);
  }
  let firstOther = -1;
  for (let t = 2; t <= 300 && firstOther < 0; t++) {
    opt.step();
    const row = windowRow(opt, 0, (t - 1) % 4);
    if (row[0] !== 0) firstOther = t;
  }
  // Coordinate j's |g + e| grows by ~0.01 per step and overtakes 1 after ~100 steps.
  assert.ok(
    firstOther > 50 && firstOther < 150,
    `first other selection at ${firstOther}`,
  );
  assert.ok(Array.from(param).some((p, j) => j > 0 && p !== 0));
});

Deno.test("quantizer: nearest 4-bit codes, constant block → code 0", () => {
  const param = new Float32Array(8);
  const grad = new Float32Array([5, 1, 1, 1, 2, 2, 2, 2]);
  const opt = new MicroAdamCpu([{ param, grad }], {
    density: 1 / 8,
    efBlockSize: 4,
    window: 1,
  });
  opt.step();
  const t = opt.stateDict().tensors[0];
  const codes = u32View(t.buffers.codes);
  assert.deepEqual(
    Array.from({ length: 8 }, (_, j) => getCode(codes, j)),
    [0, 15, 15, 15, 0, 0, 0, 0],
  );
  const stats = u32View(t.buffers.stats);
  assert.equal(stats.length, 3); // floor(8/4) + 1: the last pair is unused
  assert.deepEqual(
    Array.from(
      stats,
      (s) => [bf16ToNumber(s & 0xffff), bf16ToNumber(s >>> 16)],
    ),
    [[0, 1], [2, 2], [0, 0]],
  );
  // Random data: every code within 0..15 and within half a step of the value.
  const r = rng(22);
  const d = 4000;
  const g2 = Float32Array.from({ length: d }, () => (r() - 0.3) * 7);
  const o2 = new MicroAdamCpu([{ param: new Float32Array(d), grad: g2 }], {
    density: 0.05,
    efBlockSize: 64,
  });
  o2.step();
  const residual = g2.slice();
  const row = windowRow(o2, 0, 0);
  const g = o2.geometry[0];
  for (let b = 0, n = 0; b < g.blocks; b++) {
    for (let q = 0; q < blockK(g, b); q++, n++) {
      residual[b * g.blockSize + row[n]] = 0;
    }
  }
  const ev = efValues(o2, 0);
  const st = u32View(o2.stateDict().tensors[0].buffers.stats);
  for (let j = 0; j < d; j++) {
    const s = st[Math.floor(j / 64)];
    const u = (bf16ToNumber(s >>> 16) - bf16ToNumber(s & 0xffff)) / 15;
    assert.ok(Math.abs(ev[j] - residual[j]) <= u / 2 + 1e-6, `coord ${j}`);
  }
});

Deno.test("f32 mode stats bracket the block: min rounded down, max rounded up", () => {
  const r = rng(23);
  const d = 2048;
  const Q = 32;
  const grad = Float32Array.from({ length: d }, () => (r() - 0.5) * 3.3);
  const opt = new MicroAdamCpu([{ param: new Float32Array(d), grad }], {
    density: 0.01,
    efBlockSize: Q,
  });
  opt.step();
  const a = grad.slice();
  const row = windowRow(opt, 0, 0);
  for (const idx of row) a[idx] = 0; // one block: local = global
  const stats = u32View(opt.stateDict().tensors[0].buffers.stats);
  let rounded = 0;
  for (let b = 0; b * Q < d; b++) {
    const blk = a.subarray(b * Q, (b + 1) * Q);
    const mn = Math.min(...blk);
    const mx = Math.max(...blk);
    const lo = stats[b] & 0xffff;
    const hi = stats[b] >>> 16;
    assert.ok(bf16ToNumber(lo) <= mn && bf16ToNumber(hi) >= mx, `block ${b}`);
    // Tight: the next bf16 inward would no longer cover the data.
    if (bf16ToNumber(lo) !== mn) {
      rounded++;
      assert.ok(bf16ToNumber(mn < 0 ? lo - 1 : lo + 1) > mn);
    }
    if (bf16ToNumber(hi) !== mx) {
      assert.ok(bf16ToNumber(mx > 0 ? hi - 1 : hi + 1) < mx);
    }
  }
  assert.ok(rounded > 10); // the data are not bf16, so rounding happened
});

Deno.test("stateBytes = 4·m·k + 4·ceil(d/8) + 4·(floor(d/Q) + 1) per tensor", () => {
  const sizes = [1, 7, 8, 100, 4097, 70001];
  const tensors = sizes.map((n) => ({
    param: new Float32Array(n),
    grad: new Float32Array(n),
  }));
  for (
    const o of [
      { window: 10, density: 0.01, topkBlockSize: 4096, efBlockSize: 4096 },
      { window: 3, density: 0.5, topkBlockSize: 100, efBlockSize: 64 },
      { window: 1, density: 1, topkBlockSize: 65536, efBlockSize: 2 },
    ]
  ) {
    const opt = new MicroAdamCpu(tensors, o);
    let want = 0;
    for (const d of sizes) {
      const D = Math.min(o.topkBlockSize, d);
      const full = Math.floor(d / D);
      const tail = d - full * D;
      const k = full * Math.ceil(D * o.density) +
        (tail ? Math.ceil(tail * o.density) : 0);
      want += 4 * o.window * k + 4 * Math.ceil(d / 8) +
        4 * (Math.floor(d / o.efBlockSize) + 1);
    }
    assert.equal(opt.stateBytes(), want, JSON.stringify(o));
  }
  // About one byte per parameter at the defaults (m = 10, 1 %).
  const big = new MicroAdamCpu([{
    param: new Float32Array(1 << 20),
    grad: new Float32Array(1 << 20),
  }]);
  const perParam = big.stateBytes() / (1 << 20);
  assert.ok(perParam > 0.9 && perParam < 1.0, `${perParam} bytes/param`);
});

function runTrajectory(
  dtype: "f32" | "bf16",
  steps: number,
  split?: number,
): { params: (Float32Array | Uint16Array)[]; state: OptimizerState } {
  const r = rng(24);
  const sizes = [37, 300];
  const mk = (n: number) =>
    dtype === "bf16"
      ? toBf16Array(Float32Array.from({ length: n }, () => r() - 0.5))
      : Float32Array.from({ length: n }, () => r() - 0.5);
  const tensors: CpuTensor[] = sizes.map((n, i) => ({
    param: mk(n),
    grad: mk(n),
    name: `t${i}`,
  }));
  const grads = Array.from({ length: steps }, () => sizes.map(mk));
  const o = {
    dtype,
    lr: 0.01,
    weightDecay: 0.1,
    window: 4,
    density: 0.1,
    topkBlockSize: 64,
    efBlockSize: 16,
  } as const;
  let opt = new MicroAdamCpu(tensors, o);
  for (let s = 0; s < steps; s++) {
    if (s === split) {
      const saved = opt.stateDict();
      opt.dispose();
      opt = new MicroAdamCpu(tensors, o);
      opt.loadStateDict(saved);
    }
    grads[s].forEach((g, i) => tensors[i].grad.set(g));
    if (s === 5) tensors[1].grad[3] = dtype === "bf16" ? 0x7fc0 : NaN; // one skip
    opt.step();
  }
  return { params: tensors.map((t) => t.param), state: opt.stateDict() };
}

Deno.test("state round trip is bit-exact (20 + load + 10 == 30), f32 and bf16", () => {
  for (const dtype of ["f32", "bf16"] as const) {
    const whole = runTrajectory(dtype, 30);
    const resumed = runTrajectory(dtype, 30, 20);
    assert.deepEqual(resumed.params, whole.params, dtype);
    assertSameState(resumed.state, whole.state);
    assert.deepEqual(
      [
        whole.state.step,
        whole.state.calls,
        whole.state.skipped,
        whole.state.ring,
      ],
      [29, 30, 1, 29 % 4],
    );
  }
});

Deno.test("loadStateDict: wrong config, ring or indices → CheckpointError, state intact", () => {
  const t = () => ({
    param: new Float32Array(40).fill(1),
    grad: new Float32Array(40).fill(0.5),
  });
  const o = { window: 3, density: 0.1, topkBlockSize: 16, efBlockSize: 8 };
  const opt = new MicroAdamCpu([t()], o);
  opt.step();
  const mine = opt.stateDict();
  const check = (s: OptimizerState, msg: RegExp) => {
    assert.throws(
      () => opt.loadStateDict(s),
      (e: unknown) => e instanceof CheckpointError && msg.test(e.message),
    );
    assertSameState(opt.stateDict(), mine);
  };
  for (
    const [k, v] of [
      ["window", 4],
      ["density", 0.2],
      ["topkBlockSize", 32],
      ["efBlockSize", 4],
    ] as const
  ) {
    check(
      new MicroAdamCpu([t()], { ...o, [k]: v }).stateDict(),
      new RegExp(`"${k}"`),
    );
  }
  const bf = new MicroAdamCpu([{
    param: new Uint16Array(40),
    grad: new Uint16Array(40),
  }], {
    ...o,
    dtype: "bf16",
  });
  check(bf.stateDict(), /"dtype"/);
  check({ ...opt.stateDict(), ring: 2 }, /ring/);
  const badIndex = opt.stateDict();
  new Uint32Array(badIndex.tensors[0].buffers.window.buffer)[0] = 16; // block of 16
  check(badIndex, /index 16, outside its block of 16/);
  check(
    { ...opt.stateDict(), optimizer: "MicroAdamTheory" },
    /optimizer mismatch/,
  );
});

Deno.test("bad options name the option", () => {
  const t = [{ param: new Float32Array(4), grad: new Float32Array(4) }];
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ window: 0 }, /^window/],
    [{ window: 2.5 }, /^window/],
    [{ efBlockSize: 7 }, /^efBlockSize/],
    [{ efBlockSize: 0 }, /^efBlockSize/],
    [{ topkBlockSize: 65537 }, /^topkBlockSize/],
    [{ density: 0 }, /^density/],
    [{ density: 1.5 }, /^density/],
    [{ density: NaN }, /^density/],
    [{ dtype: "f16" }, /^dtype/],
    [{ lr: -1 }, /^lr/],
    [{ betas: [0.9, 1] }, /^betas/],
  ];
  for (const [o, msg] of bad) {
    assert.throws(
      () => new MicroAdamCpu(t, o),
      (e: unknown) => e instanceof InvalidOptionError && msg.test(e.message),
      JSON.stringify(o),
    );
  }
  // D = 65536 is the largest allowed (u16 indices).
  new MicroAdamCpu(t, { topkBlockSize: 65536 });
});

Deno.test("wrong array type for the dtype → TensorMismatchError", () => {
  assert.throws(
    () =>
      new MicroAdamCpu([{
        param: new Float32Array(4),
        grad: new Float32Array(4),
        name: "w",
      }], {
        dtype: "bf16",
      }),
    (e: unknown) =>
      e instanceof TensorMismatchError && /"w"/.test(e.message) &&
      /Uint16Array/.test(e.message) && /Float32Array\(4\)/.test(e.message),
  );
  assert.throws(
    () =>
      new MicroAdamCpu([
        { param: new Uint16Array(4), grad: new Uint16Array(4) } as CpuTensor,
      ]),
    TensorMismatchError,
  );
  assert.throws(
    () =>
      new MicroAdamCpu([{
        param: new Uint16Array(4),
        grad: new Uint16Array(3),
      }], {
        dtype: "bf16",
      }),
    /4 elements but grad has 3/,
  );
});

Deno.test("bf16 non-finite gradients skip; the ring only advances on applied steps", () => {
  const param = toBf16Array([1, 2, 3, 4]);
  const grad = toBf16Array([0.5, -0.5, 0.25, 1]);
  const opt = new MicroAdamCpu([{ param, grad }], {
    dtype: "bf16",
    density: 0.5,
    window: 3,
  });
  opt.step();
  const s1 = opt.stateDict();
  const p1 = param.slice();
  for (const bad of [0x7fc0, 0xff80, 0x7f80, 0xffc1]) {
    grad[2] = bad;
    assert.equal(opt.step(), false);
  }
  assert.deepEqual(param, p1);
  assertSameState({ ...opt.stateDict(), calls: 1, skipped: 0 }, s1);
  assert.deepEqual(opt.status(), {
    step: 1,
    calls: 5,
    skipped: 4,
    lastNonFiniteTensor: "0",
  });
  assert.equal(opt.stateDict().ring, 1);
  grad[2] = bf16Bits(0.25);
  assert.equal(opt.step(), true);
  assert.equal(opt.stateDict().ring, 2);
  // The largest finite bf16 is past the gradient limit (2^60): skipped. The
  // largest bf16 under the limit is applied.
  grad[2] = 0x7f7f;
  assert.equal(opt.step(), false);
  grad[2] = bf16Bits(2 ** 60 * (1 - 2 ** -8));
  assert.equal(opt.step(), true);
});
