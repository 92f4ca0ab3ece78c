/**
 * GPU MicroAdam against MicroAdamCpu step by step: param groups and schedules,
 * non-finite gradients, steps encoded into the caller's encoder.
 */

import assert from "node:assert/strict";
import { MicroAdam } from "../src/optim/microadam.ts";
import { cosineDecay, linearWarmup, stepDecay } from "../src/core/schedule.ts";
import { readRanges } from "../src/gpu/buffers.ts";
import { NonFiniteGradientError } from "../src/errors.ts";
import {
  assertSameBytes,
  bufferFrom,
  randomF32,
  rng,
  stateDifference,
  testSeed,
  writeTo,
} from "./gpu_util.ts";
import { type Arr, device, Twin } from "./optim_microadam.ts";

// ---- 5. Param groups and schedules ---------------------------------------

for (const dtype of ["f32", "bf16"] as const) {
  Deno.test(`groups: different lr / weight decay / schedules, ${dtype}, 20 steps == CPU`, async () => {
    const seed = testSeed(`groups ${dtype}`);
    const twin = new Twin({
      dtype,
      seed,
      options: { lr: 2e-3, weightDecay: 0.02, schedule: stepDecay(4, 0.7) },
      groups: [
        {
          sizes: [1000, 3],
          lr: 1e-2,
          weightDecay: 0.1,
          schedule: cosineDecay(20, { warmupSteps: 3, minFactor: 0.1 }),
        },
        { sizes: [4097], lr: 3e-3, weightDecay: 0, schedule: linearWarmup(5) },
        { sizes: [70001, 17] }, // optimizer defaults: lr 2e-3, wd 0.02, stepDecay
      ],
    });
    try {
      for (let s = 1; s <= 20; s++) {
        if (s === 11) {
          // Groups stay mutable: both optimizers see the change at the next step.
          for (const opt of [twin.gpu, twin.cpu]) {
            opt.paramGroups[1].lr = 5e-2;
            opt.paramGroups[0].weightDecay = 0.3;
          }
        }
        twin.step();
        if (s === 1 || s % 5 === 0) {
          await twin.compare(`seed ${seed}, step ${s}`);
        }
      }
      twin.report(`groups ${dtype}`);
    } finally {
      twin.dispose();
    }
  });
}

// ---- 6. Non-finite gradients ---------------------------------------------

function poisoned(
  twin: Twin,
  where: [tensor: number, coord: number][],
  kind: "nan" | "inf",
): Arr[] {
  const grads = twin.randomGrads();
  for (const [i, j] of where) {
    const g = grads[i];
    if (g instanceof Uint16Array) g[j] = kind === "nan" ? 0x7fc1 : 0xff80;
    else g[j] = kind === "nan" ? NaN : -Infinity;
  }
  return grads;
}

function paramBytes(p: Arr[]): Uint8Array[] {
  return p.map((a) =>
    new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice()
  );
}

for (const dtype of ["f32", "bf16"] as const) {
  // f32: every tensor gathered into an arena; bf16: all in one shared buffer.
  const layout = dtype === "f32" ? "own" : "shared";
  Deno.test(`non-finite (skip), ${dtype}, ${layout} buffers: the step is skipped and nothing changes; the next finite step == CPU`, async () => {
    const seed = testSeed(`non-finite skip ${dtype}`);
    const twin = new Twin({
      dtype,
      sizes: [300, 5001, 77, 4097],
      seed,
      layout,
      // The schedule is evaluated at the call count, skipped calls included.
      options: { window: 3, schedule: stepDecay(2, 0.5), lr: 1e-2 },
    });
    try {
      for (let s = 0; s < 3; s++) twin.step();
      const cases: {
        where: [number, number][];
        kind: "nan" | "inf";
        bad: number;
      }[] = [
        { where: [[1, 4999]], kind: "nan", bad: 1 },
        { where: [[2, 0]], kind: "inf", bad: 2 }, // a gathered tensor
        { where: [[3, 4096], [0, 5]], kind: "nan", bad: 0 }, // the first bad tensor is named
      ];
      let skipped = 0;
      for (const c of cases) {
        const before = paramBytes(await twin.gpuParams());
        const stateBefore = await twin.gpu.stateDict();
        twin.step(poisoned(twin, c.where, c.kind));
        skipped++;
        const st = await twin.gpu.status();
        assert.deepEqual(st, {
          step: 3,
          calls: 3 + skipped,
          skipped,
          lastNonFiniteTensor: twin.names[c.bad],
        });
        (await twin.gpuParams()).forEach((p, i) =>
          assertSameBytes(p, before[i], `params of ${twin.names[i]} unchanged`)
        );
        const stateAfter = await twin.gpu.stateDict();
        assert.equal(
          stateDifference(stateAfter, stateBefore, { counters: false }),
          undefined,
        );
        assert.equal(stateAfter.step, 3);
        assert.equal(stateAfter.ring, stateBefore.ring);
        assert.equal(stateAfter.skipped, skipped);
      }
      twin.step(); // finite: applied as step 4 by both
      await twin.compare(`seed ${seed}, after 3 skips`);
      const st = await twin.gpu.status();
      assert.equal(st.step, 4);
      assert.equal(st.calls, 7);
      twin.report(`non-finite ${dtype}`);
    } finally {
      twin.dispose();
    }
  });
}

Deno.test("non-finite: NaN outside the tensors (shared-buffer gaps, bf16 padding halves) is ignored", async () => {
  const seed = testSeed("junk outside tensors");
  for (const dtype of ["f32", "bf16"] as const) {
    for (const layout of ["own", "shared"] as const) {
      const twin = new Twin({
        dtype,
        sizes: [37, 1001, 5, 70001],
        seed,
        layout,
      });
      try {
        for (let s = 1; s <= 3; s++) {
          twin.writeWithJunk(twin.randomGrads());
          twin.gpu.step();
          assert.equal(twin.cpu.step(), true);
          await twin.compare(`${dtype} ${layout}: seed ${seed}, step ${s}`);
        }
        assert.equal((await twin.gpu.status()).skipped, 0);
      } finally {
        twin.dispose();
      }
    }
  }
});

Deno.test("non-finite (error): status() and the next step() throw NonFiniteGradientError naming the tensor", async () => {
  const seed = testSeed("non-finite error");
  const twin = new Twin({
    dtype: "f32",
    sizes: [300, 5001, 77],
    seed,
    options: { nonFinite: "error" },
  });
  try {
    twin.step();
    twin.step();
    const before = paramBytes(await twin.gpuParams());
    const stateBefore = await twin.gpu.stateDict();

    // 1. status() reports it, once.
    twin.write(poisoned(twin, [[1, 17]], "nan"));
    twin.gpu.step(); // does not read back: no throw here
    assert.throws(() => twin.cpu.step(), NonFiniteGradientError);
    await assert.rejects(twin.gpu.status(), (e) => {
      assert.ok(e instanceof NonFiniteGradientError, String(e));
      assert.equal(e.tensor, twin.names[1]);
      assert.equal(e.call, 3);
      assert.match(e.message, new RegExp(twin.names[1]));
      return true;
    });
    const st = await twin.gpu.status(); // reported once
    assert.equal(st.skipped, 1);
    assert.equal(st.step, 2);
    assert.equal(st.lastNonFiniteTensor, twin.names[1]);
    (await twin.gpuParams()).forEach((p, i) =>
      assertSameBytes(p, before[i], `params of ${twin.names[i]} unchanged`)
    );
    assert.equal(
      stateDifference(await twin.gpu.stateDict(), stateBefore, {
        counters: false,
      }),
      undefined,
    );

    // 2. Not asked for: the next step() throws it (and does not step).
    twin.write(poisoned(twin, [[2, 76]], "inf"));
    twin.gpu.step();
    assert.throws(() => twin.cpu.step(), NonFiniteGradientError);
    await twin.gpuParams(); // a readback: the skip flag has been read by now
    await new Promise((r) => setTimeout(r, 0));
    twin.write(twin.randomGrads());
    assert.throws(() => twin.gpu.step(), (e) => {
      assert.ok(e instanceof NonFiniteGradientError, String(e));
      assert.equal(e.tensor, twin.names[2]);
      assert.equal(e.call, 4);
      return true;
    });

    // 3. A following finite step applies normally and matches the CPU, which skipped the same calls.
    twin.step();
    await twin.compare(`seed ${seed}, after 2 errors`);
    const end = await twin.gpu.status();
    assert.deepEqual(
      { step: end.step, calls: end.calls, skipped: end.skipped },
      {
        step: 3,
        calls: 5,
        skipped: 2,
      },
    );

    // 4. A bad step encoded into the caller's encoder: reported by status() once submitted.
    twin.write(poisoned(twin, [[0, 299]], "nan"));
    assert.throws(() => twin.cpu.step(), NonFiniteGradientError);
    const enc = device.createCommandEncoder();
    twin.gpu.step({ encoder: enc });
    device.queue.submit([enc.finish()]);
    await assert.rejects(twin.gpu.status(), (e) => {
      assert.ok(e instanceof NonFiniteGradientError, String(e));
      assert.equal(e.tensor, twin.names[0]);
      assert.equal(e.call, 6);
      return true;
    });
    twin.step();
    await twin.compare(`seed ${seed}, after 3 errors`);
  } finally {
    twin.dispose();
  }
});

// ---- 7. step({ encoder }) ------------------------------------------------

Deno.test("step({ encoder }): three steps encoded with the gradient uploads in one caller encoder == three step() calls", async () => {
  const seed = testSeed("encoder");
  const r = rng(seed);
  const sizes = [4097, 33, 300, 70001];
  const p0 = sizes.map((n) => randomF32(r, n));
  const grads = [0, 1, 2].map(() => sizes.map((n) => randomF32(r, n, 0.1)));
  const options = { lr: 1e-2, schedule: cosineDecay(3), weightDecay: 0.01 };
  const make = () =>
    sizes.map((n, i) => ({
      name: `t${i}`,
      length: n,
      param: bufferFrom(device, p0[i]),
      grad: bufferFrom(device, new Float32Array(n)),
    }));
  const ta = make();
  const tb = make();
  const a = new MicroAdam(device, ta, options);
  const b = new MicroAdam(device, tb, options);
  // Gradients for b, staged in buffers of their own and copied in by the encoder.
  const staged = grads.map((gs) => gs.map((g) => bufferFrom(device, g)));
  try {
    for (const gs of grads) {
      gs.forEach((g, i) => writeTo(device, ta[i].grad, g));
      a.step();
    }
    const enc = device.createCommandEncoder();
    grads.forEach((gs, s) => {
      gs.forEach((g, i) =>
        enc.copyBufferToBuffer(staged[s][i], 0, tb[i].grad, 0, g.byteLength)
      );
      b.step({ encoder: enc });
    });
    assert.equal(b.calls, 3);
    // Nothing ran yet.
    const pending = await readRanges(
      device,
      tb.map((t) => ({ buffer: t.param, offset: 0, size: t.param.size })),
    );
    pending.forEach((bytes, i) =>
      assertSameBytes(bytes, p0[i], `t${i} before submit`)
    );
    device.queue.submit([enc.finish()]);
    const sa = await a.status();
    const sb = await b.status();
    assert.deepEqual(sb, sa);
    assert.equal(sb.step, 3);
    const pa = await readRanges(
      device,
      ta.map((t) => ({ buffer: t.param, offset: 0, size: t.param.size })),
    );
    const pb = await readRanges(
      device,
      tb.map((t) => ({ buffer: t.param, offset: 0, size: t.param.size })),
    );
    pa.forEach((x, i) => assertSameBytes(pb[i], x, `params of t${i}`));
    assert.equal(
      stateDifference(await b.stateDict(), await a.stateDict()),
      undefined,
    );
    // The schedule made the three lrs differ, and the params did move.
    assert.notDeepEqual(new Float32Array(pa[3].buffer), p0[3]);
  } finally {
    a.dispose();
    b.dispose();
    for (const t of [...ta, ...tb]) {
      t.param.destroy();
      t.grad.destroy();
    }
    for (const x of staged.flat()) x.destroy();
  }
});
