/**
 * GpuOptimizer behaviours shared by every algorithm, exercised through Adam
 * and MicroAdam: placement options, the device check, memory accounting, the
 * calls counter, device loss, the per-step hyperparameter ring (several steps
 * in one encoder) and timestamp writes.
 */

import assert from "node:assert/strict";
import {
  GpuCommandError,
  GpuUnavailableError,
  InvalidOptionError,
} from "../src/errors.ts";
import { requestDevice } from "../src/gpu/device.ts";
import { readRanges } from "../src/gpu/buffers.ts";
import type { GpuTensor } from "../src/gpu/tensors.ts";
import { Adam } from "../src/optim/adam.ts";
import { MicroAdam } from "../src/optim/microadam.ts";
import type { GpuOptimizer } from "../src/optim/gpu_optimizer.ts";
import {
  randomF32,
  rng,
  TENSOR_USAGE,
  testDevice,
  writeTo,
} from "./gpu_util.ts";

const device = await testDevice();

type Kind = "Adam" | "MicroAdam";
const KINDS: Kind[] = ["Adam", "MicroAdam"];

interface Setup {
  opt: GpuOptimizer;
  tensors: GpuTensor[];
  dispose(): void;
}

/** An optimizer over tensors of `sizes` with seeded params and grads. */
function setup(
  kind: Kind,
  sizes: number[],
  options: Record<string, unknown> = {},
  dev: GPUDevice = device,
  seed = 1,
): Setup {
  const r = rng(seed);
  const tensors = sizes.map((n, i) => {
    const param = dev.createBuffer({ size: 4 * n, usage: TENSOR_USAGE });
    const grad = dev.createBuffer({ size: 4 * n, usage: TENSOR_USAGE });
    writeTo(dev, param, randomF32(r, n));
    writeTo(dev, grad, randomF32(r, n, 0.1));
    return { param, grad, length: n, name: `t${i}` };
  });
  const opt = kind === "Adam"
    ? new Adam(dev, tensors, options)
    : new MicroAdam(dev, tensors, { density: 0.05, ...options });
  return {
    opt,
    tensors,
    dispose() {
      opt.dispose();
      for (const t of tensors) {
        t.param.destroy();
        t.grad.destroy();
      }
    },
  };
}

async function params(s: Setup): Promise<Uint8Array[]> {
  return await readRanges(
    device,
    s.tensors.map((t) => ({ buffer: t.param, offset: 0, size: 4 * t.length })),
  );
}

function tiny(): GpuTensor[] {
  return [{
    param: device.createBuffer({ size: 64, usage: TENSOR_USAGE }),
    grad: device.createBuffer({ size: 64, usage: TENSOR_USAGE }),
    length: 16,
  }];
}

Deno.test("placement options: maxBindingBytes outside [4096, device limit] and a bad gatherBelow are InvalidOptionErrors", () => {
  const limit = device.limits.maxStorageBufferBindingSize;
  const t = tiny();
  for (const make of [Adam, MicroAdam]) {
    for (const v of [4095, 0, -4096, limit + 4, limit * 2, NaN, 5000.5]) {
      assert.throws(
        () => new make(device, t, { maxBindingBytes: v }),
        (e: unknown) =>
          e instanceof InvalidOptionError &&
          e.message.includes(
            `maxBindingBytes: expected an integer in [4096, ${limit}] (the device limit), got ${v}`,
          ),
        `${make.name} maxBindingBytes ${v}`,
      );
    }
    for (const v of [-1, 1.5, NaN, -Infinity]) {
      assert.throws(
        () => new make(device, t, { gatherBelow: v }),
        (e: unknown) =>
          e instanceof InvalidOptionError &&
          e.message.includes(`gatherBelow: expected an integer >= 0, got ${v}`),
        `${make.name} gatherBelow ${v}`,
      );
    }
    // The boundaries are accepted.
    for (
      const o of [
        { maxBindingBytes: 4096 },
        { maxBindingBytes: limit },
        { gatherBelow: 0 },
      ]
    ) {
      new make(device, t, o).dispose();
    }
  }
  t[0].param.destroy();
  t[0].grad.destroy();
});

Deno.test("a first argument that is not a GPUDevice is a GpuUnavailableError", () => {
  const t = tiny();
  for (const bad of [undefined, null, {}, navigator.gpu, "device"]) {
    for (const make of [Adam, MicroAdam]) {
      assert.throws(
        () => new make(bad as unknown as GPUDevice, t),
        (e: unknown) =>
          e instanceof GpuUnavailableError &&
          /expected a GPUDevice \(see requestDevice\(\)\)/.test(e.message),
      );
    }
  }
  t[0].param.destroy();
  t[0].grad.destroy();
});

for (const kind of KINDS) {
  Deno.test(`${kind}: memoryBytes().state === stateBytes() === the state dict's bytes; workspace > 0`, async () => {
    // Two gathered small tensors, one large one in place.
    const s = setup(kind, [100, 37, 20000], { nonFinite: "error" });
    try {
      const mem = s.opt.memoryBytes();
      assert.equal(mem.state, s.opt.stateBytes());
      assert.ok(mem.workspace > 0, `workspace ${mem.workspace}`);
      const dict = await s.opt.stateDict();
      let bytes = 0;
      for (const t of dict.tensors) {
        for (const b of Object.values(t.buffers)) bytes += b.length;
      }
      assert.equal(s.opt.stateBytes(), bytes);
      if (kind === "Adam") assert.equal(bytes, 8 * (100 + 37 + 20000));
      // Staging buffers of nonFinite "error" are not counted (MAP_READ).
      s.opt.step();
      await s.opt.status();
      assert.deepEqual(s.opt.memoryBytes(), mem);
      console.log(
        `${kind}: state ${mem.state} B, workspace ${mem.workspace} B for ${
          100 + 37 + 20000
        } params`,
      );
    } finally {
      s.dispose();
    }
  });

  Deno.test(`${kind}: calls counts every step() (submitted or encoded), status() agrees`, async () => {
    const s = setup(kind, [256]);
    try {
      assert.equal(s.opt.calls, 0);
      s.opt.step();
      assert.equal(s.opt.calls, 1);
      const enc = device.createCommandEncoder();
      s.opt.step({ encoder: enc });
      s.opt.step({ encoder: enc });
      assert.equal(s.opt.calls, 3);
      device.queue.submit([enc.finish()]);
      const st = await s.opt.status();
      assert.deepEqual(
        { step: st.step, calls: st.calls, skipped: st.skipped },
        { step: 3, calls: 3, skipped: 0 },
      );
    } finally {
      s.dispose();
    }
  });
}

Deno.test({
  name:
    'device loss: step(), status() and stateDict() throw GpuUnavailableError mentioning "lost"',
  async fn() {
    const other = await requestDevice();
    const s = setup("MicroAdam", [300], {}, other);
    s.opt.step();
    other.destroy();
    await new Promise((r) => setTimeout(r, 50));
    const lost = (e: unknown) =>
      e instanceof GpuUnavailableError && /lost/.test(e.message) &&
      /MicroAdam/.test(e.message);
    assert.throws(() => s.opt.step(), lost);
    await assert.rejects(s.opt.status(), lost);
    await assert.rejects(s.opt.stateDict(), lost);
    assert.equal(s.opt.calls, 1, "the failed step() did not count");
    s.opt.dispose(); // still allowed
  },
});

for (const kind of KINDS) {
  Deno.test(`${kind}: hyperparameter ring — 3 steps with different lr encoded into ONE encoder == 3 submitted steps`, async () => {
    const lrs = [0.01, 0.02, 0.04];
    const sizes = [5000, 300, 77];
    const run = async (mode: "encoded" | "submitted" | "constant") => {
      const s = setup(kind, sizes, { lr: lrs[0] }, device, 7);
      try {
        if (mode === "encoded") {
          const enc = device.createCommandEncoder();
          for (const lr of lrs) {
            s.opt.paramGroups[0].lr = lr;
            s.opt.step({ encoder: enc });
          }
          device.queue.submit([enc.finish()]);
        } else {
          for (const lr of lrs) {
            if (mode === "submitted") s.opt.paramGroups[0].lr = lr;
            s.opt.step();
          }
        }
        return await params(s);
      } finally {
        s.dispose();
      }
    };
    const encoded = await run("encoded");
    const submitted = await run("submitted");
    const constant = await run("constant");
    sizes.forEach((_, i) => {
      assert.deepEqual(
        encoded[i],
        submitted[i],
        `tensor ${i}: encoded != submitted`,
      );
    });
    // The lr schedule matters: a constant lr gives other params.
    assert.ok(
      sizes.some((_, i) => !encoded[i].every((b, j) => b === constant[i][j])),
      "the lr changes had no effect",
    );
    if (kind === "Adam") {
      // Closed form: with a constant gradient, Adam's bias-corrected moments
      // are m̂ = g and v̂ = g² at every step, so each step moves p by
      // lr·g / (|g| + ε): after the three, p0 − (0.01 + 0.02 + 0.04)·sign(g).
      // Each step used its own lr (not 3 × 0.04 or 3 × 0.01).
      const r = rng(7);
      const p0 = randomF32(r, sizes[0]);
      const g = randomF32(r, sizes[0], 0.1);
      const got = new Float32Array(encoded[0].buffer);
      let worst = 0;
      for (let j = 0; j < sizes[0]; j++) {
        if (Math.abs(g[j]) < 1e-3) continue; // ε = 1e-8 is negligible beyond
        const want = p0[j] - 0.07 * Math.sign(g[j]);
        worst = Math.max(worst, Math.abs(got[j] - want));
      }
      assert.ok(worst < 1e-5, `Adam closed form off by ${worst}`);
    }
  });
}

for (const kind of KINDS) {
  Deno.test(`${kind}: hyperparameter ring — step()'s own submits with one lr write it once per 64 calls, and step bit for bit as a write per call does`, async () => {
    // Calls 1–150 one lr, 151–160 a new lr each, 161–165 into one caller's
    // encoder, 166–245 submitted by step() again with 165's lr.
    const lrOf = (c: number) =>
      c <= 150 ? 0.01 : c <= 160 ? 0.001 * (c - 150) : 0.003;
    const calls = 245;
    const run = async (writePerCall: boolean) => {
      const s = setup(kind, [5000, 300, 77], { lr: 0.01 }, device, 11);
      const queue = device.queue;
      const write = queue.writeBuffer;
      let ringWrites = 0;
      queue.writeBuffer = function (buffer, ...rest) {
        if (buffer.label === "hyperparameter ring") ringWrites++;
        return write.call(this, buffer, ...rest);
      };
      try {
        let enc: GPUCommandEncoder | undefined;
        for (let c = 1; c <= calls; c++) {
          s.opt.paramGroups[0].lr = lrOf(c);
          const encoded = c > 160 && c <= 165;
          if (writePerCall || encoded) {
            // A caller's encoder: step() writes this call's slot alone.
            enc ??= device.createCommandEncoder();
            s.opt.step({ encoder: enc });
            if (writePerCall || c === 165) {
              queue.submit([enc.finish()]);
              enc = undefined;
            }
          } else {
            s.opt.step();
          }
        }
        const status = await s.opt.status(); // throws if a step was refused
        assert.equal(status.step, calls);
        return { params: await params(s), ringWrites };
      } finally {
        Reflect.deleteProperty(queue, "writeBuffer");
        s.dispose();
      }
    };
    const perCall = await run(true);
    const ring = await run(false);
    assert.equal(perCall.ringWrites, calls);
    // 1; the runs from 2, 66 and 130; 151–165 one each; 166–229 one each (the
    // ring still held slots of the encoded calls); the run from 230.
    assert.equal(ring.ringWrites, 1 + 3 + 15 + 64 + 1);
    ring.params.forEach((p, i) => {
      assert.deepEqual(p, perCall.params[i], `tensor ${i}`);
    });
  });
}

Deno.test("hyperparameter ring: 64 unsubmitted steps (the documented maximum) each use their own lr (Adam closed form)", async () => {
  const n = 2000;
  const s = setup("Adam", [n], { lr: 0 }, device, 9);
  try {
    const lrs = Array.from({ length: 64 }, (_, k) => 1e-3 * (1 + (k % 7)));
    const enc = device.createCommandEncoder();
    for (const lr of lrs) {
      s.opt.paramGroups[0].lr = lr;
      s.opt.step({ encoder: enc });
    }
    device.queue.submit([enc.finish()]);
    const got = new Float32Array((await params(s))[0].buffer);
    // Constant gradient: every step moves p by lr·sign(g) (see above).
    const r = rng(9);
    const p0 = randomF32(r, n);
    const g = randomF32(r, n, 0.1);
    const total = lrs.reduce((a, b) => a + b, 0);
    let worst = 0;
    for (let j = 0; j < n; j++) {
      if (Math.abs(g[j]) < 1e-3) continue;
      worst = Math.max(
        worst,
        Math.abs(got[j] - (p0[j] - total * Math.sign(g[j]))),
      );
    }
    assert.ok(worst < 2e-5, `off by ${worst} (total lr ${total})`);
  } finally {
    s.dispose();
  }
});

Deno.test("a schedule failing inside step() throws InvalidOptionError before anything is encoded: calls and state unchanged", async () => {
  const s = setup("MicroAdam", [500]);
  try {
    s.opt.step();
    const before = await s.opt.stateDict();
    const p0 = (await params(s))[0];
    s.opt.paramGroups[0].schedule = (step) => (step === 2 ? NaN : 1);
    assert.throws(
      () => s.opt.step(),
      (e: unknown) =>
        e instanceof InvalidOptionError &&
        /group 0 lr at step 2/.test(e.message),
    );
    assert.equal(s.opt.calls, 1);
    const after = await s.opt.stateDict();
    assert.equal(after.step, before.step);
    assert.deepEqual(after.tensors, before.tensors);
    assert.deepEqual((await params(s))[0], p0);
    // Fixed, the next call is call 2 and applies.
    s.opt.paramGroups[0].schedule = undefined;
    s.opt.step();
    assert.equal((await s.opt.status()).step, 2);
  } finally {
    s.dispose();
  }
});

Deno.test("timestampWrites: accepted when the device has timestamp-query; resolved timestamps are non-decreasing", async (t) => {
  if (!device.features.has("timestamp-query")) {
    // requestDevice enables it whenever the adapter has it (see device_test).
    const adapter = await navigator.gpu.requestAdapter();
    assert.equal(adapter?.features.has("timestamp-query"), false);
    t.step({ name: "no timestamp-query on this adapter", fn: () => {} });
    return;
  }
  for (const kind of KINDS) {
    const s = setup(kind, [20000, 100, 50]);
    const steps = 3;
    const qs = device.createQuerySet({ type: "timestamp", count: 2 * steps });
    const resolved = device.createBuffer({
      size: 16 * steps,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    try {
      device.pushErrorScope("validation");
      const enc = device.createCommandEncoder();
      for (let i = 0; i < steps; i++) {
        const timestampWrites = {
          querySet: qs,
          beginningOfPassWriteIndex: 2 * i,
          endOfPassWriteIndex: 2 * i + 1,
        };
        // Alternate submitted and encoded steps.
        if (i === 1) s.opt.step({ encoder: enc, timestampWrites });
        else s.opt.step({ timestampWrites });
      }
      enc.resolveQuerySet(qs, 0, 2 * steps, resolved, 0);
      device.queue.submit([enc.finish()]);
      assert.equal(await device.popErrorScope(), null);
      const [bytes] = await readRanges(device, [{
        buffer: resolved,
        offset: 0,
        size: 16 * steps,
      }]);
      const ts = new BigUint64Array(bytes.buffer);
      // Order of execution: step 0, step 2 (both submitted before enc), then
      // the encoded step 1.
      const order = [0, 1, 4, 5, 2, 3].map((k) => ts[k]);
      for (let k = 1; k < order.length; k++) {
        assert.ok(
          order[k] >= order[k - 1],
          `${kind}: timestamps ${order.join(", ")} decrease at ${k}`,
        );
      }
      assert.ok(order[5] > order[0], `${kind}: no time passed: ${order}`);
      console.log(
        `${kind}: pass times ${
          [0, 1, 2].map((i) => Number(ts[2 * i + 1] - ts[2 * i]) / 1e3)
            .map((us) => us.toFixed(0)).join(", ")
        } µs`,
      );
    } finally {
      s.dispose();
      qs.destroy();
      resolved.destroy();
    }
  }
});

Deno.test("profile: each kernel in a pass of its own, labelled in dispatch order, timestamps in order", async (t) => {
  if (!device.features.has("timestamp-query")) {
    t.step({ name: "no timestamp-query on this adapter", fn: () => {} });
    return;
  }
  // [name, kind, tensor sizes, options, the labels expected]
  const cases: [string, Kind, number[], Record<string, unknown>, string[]][] = [
    ["Adam", "Adam", [20000, 100], {}, ["check_finite", "prologue", "adam"]],
    [
      'Adam, nonFinite "skip"',
      "Adam",
      [20000, 100],
      { nonFinite: "skip" },
      ["check_finite", "prologue", "adam"],
    ],
    [
      'Adam, nonFinite "error"',
      "Adam",
      [20000, 100],
      { nonFinite: "error" },
      ["check_finite", "prologue", "adam"],
    ],
    // No search for non-finite gradients: one read of the gradients less.
    [
      'Adam, nonFinite "unchecked"',
      "Adam",
      [20000, 100],
      { nonFinite: "unchecked" },
      ["prologue", "adam"],
    ],
    [
      "MicroAdam, one-pass kernels (k = 41, m = 10)",
      "MicroAdam",
      [20000],
      { density: 0.01 },
      [
        "microadam_select_fast",
        "prologue",
        "microadam_update_fast",
        "microadam_commit",
      ],
    ],
    [
      "MicroAdam, general kernels (D = 1000, Q = 300)",
      "MicroAdam",
      [20000],
      { topkBlockSize: 1000, efBlockSize: 300 },
      ["microadam_select", "prologue", "microadam_update", "microadam_commit"],
    ],
    [
      // m · k = 10 · 205 is past what the one-pass update holds for the
      // large tensor, not for the small one.
      "MicroAdam, both paths in one batch (density 5 %)",
      "MicroAdam",
      [20000, 100],
      {},
      [
        "microadam_select_fast",
        "microadam_select",
        "prologue",
        "microadam_update_fast",
        "microadam_update",
        "microadam_commit",
      ],
    ],
  ];
  for (const [name, kind, sizes, options, expected] of cases) {
    const s = setup(kind, sizes, options);
    const qs = device.createQuerySet({ type: "timestamp", count: 16 });
    const resolved = device.createBuffer({
      size: 8 * 16,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    try {
      device.pushErrorScope("validation");
      const labels: string[] = [];
      const enc = device.createCommandEncoder();
      s.opt.step({ encoder: enc, profile: { querySet: qs, labels } });
      assert.deepEqual(labels, expected, name);
      enc.resolveQuerySet(qs, 0, 2 * labels.length, resolved, 0);
      device.queue.submit([enc.finish()]);
      assert.equal(await device.popErrorScope(), null, name);
      const [bytes] = await readRanges(device, [{
        buffer: resolved,
        offset: 0,
        size: 16 * labels.length,
      }]);
      const ts = [...new BigUint64Array(bytes.buffer)];
      for (let k = 1; k < ts.length; k++) {
        assert.ok(
          ts[k] >= ts[k - 1],
          `${name}: timestamps ${ts.join(", ")} decrease at ${k}`,
        );
      }
    } finally {
      s.dispose();
      qs.destroy();
      resolved.destroy();
    }
  }
});

Deno.test({
  name:
    "construction: a GPU error while building (a buffer of another device) surfaces from status() and step()",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const device = await requestDevice();
    const other = await requestDevice();
    try {
      const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
        GPUBufferUsage.COPY_DST;
      const param = device.createBuffer({ size: 16, usage });
      const grad = other.createBuffer({ size: 16, usage });
      const opt = new Adam(device, [{ param, grad, length: 4 }]);
      await assert.rejects(
        () => opt.status(),
        (e: unknown) =>
          e instanceof GpuCommandError &&
          /refused the optimizer's buffers or pipelines \(validation/.test(
            e.message,
          ),
      );
      assert.throws(() => opt.step(), GpuCommandError);
      await assert.rejects(() => opt.stateDict(), GpuCommandError);
      opt.dispose();
      // The constructor's error scopes are closed.
      await assert.rejects(() => device.popErrorScope());
    } finally {
      device.destroy();
      other.destroy();
    }
  },
});

Deno.test({
  name:
    "construction: a constructor that throws closes its error scopes and frees what it allocated",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const device = await requestDevice();
    try {
      const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
        GPUBufferUsage.COPY_DST;
      const param = device.createBuffer({ size: 4 * 8192, usage });
      const grad = device.createBuffer({ size: 4 * 8192, usage });
      // One top-k block of 4096 f32 elements needs 16 KiB: a 4 KiB binding
      // cannot hold it, so planning fails inside the error scopes.
      assert.throws(
        () =>
          new MicroAdam(device, [{ param, grad, length: 8192 }], {
            maxBindingBytes: 4096,
          }),
        InvalidOptionError,
      );
      // Balanced: with no scope left open, popping one is an error.
      await assert.rejects(() => device.popErrorScope());
    } finally {
      device.destroy();
    }
  },
});
