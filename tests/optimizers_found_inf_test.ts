/**
 * The optimizer matrix (tests/optimizers.ts) with the caller's found-inf flag,
 * `step({ foundInf })`: a set flag skips the step exactly, a clear one steps
 * exactly as no flag, the Adam family trusts it in place of its own check
 * while MicroAdam checks as well, and bad flags are typed errors.
 */

import assert from "node:assert/strict";
import { InvalidOptionError, NonFiniteGradientError } from "../mod.ts";
import { TENSOR_USAGE, writeTo } from "./gpu_util.ts";
import {
  all,
  assertBitsEqual,
  assertBuffersEqual,
  device,
  expectError,
  expectReject,
  type GpuOpt,
  gradsAt,
  type Handle,
  make,
  matrix,
  randomData,
  run,
  type Spec,
} from "./optimizers.ts";

const F32_ONE = 0x3f800000;
const F32_NAN = 0x7fc00000;
const F32_MINUS_ONE = 0xbf800000;
const F32_MINUS_ZERO = 0x80000000;

function twoTensors(s: Spec, seed: number, options = {}): Handle {
  const [a, b] = randomData(seed, [40, 4097]);
  return make(s, [{ name: "a", data: a }, { name: "b", data: b }], {
    lr: s.lr,
    ...options,
  });
}

const adamFamily = (s: Spec) => !s.family.startsWith("MicroAdam");

matrix(
  "foundInf: a set flag (1.0, u32 1, NaN, -1.0) skips the step, state and params bit-identical; a clear one (0, -0.0) steps exactly as no flag",
  all,
  async (s) => {
    const h = twoTensors(s, 31);
    const ref = twoTensors(s, 31);
    try {
      run(h, 31, 2);
      run(ref, 31, 2);
      const before = await h.stateDict();
      const params = await h.params();
      for (const [k, bits] of [F32_ONE, 1, F32_NAN, F32_MINUS_ONE].entries()) {
        h.setGrads(gradsAt(31, 2, h.lengths));
        h.stepFlagged(bits);
        const st = await h.status();
        assert.deepEqual(
          st,
          { step: 2, calls: 3 + k, skipped: 1 + k },
          `after the flag 0x${bits.toString(16)}`,
        );
      }
      assertBuffersEqual(await h.stateDict(), before, "state after skips");
      assertBitsEqual(await h.params(), params, "params after skips");
      for (const [k, bits] of [0, F32_MINUS_ZERO].entries()) {
        const g = gradsAt(31, 2 + k, h.lengths);
        h.setGrads(g);
        ref.setGrads(g);
        h.stepFlagged(bits);
        ref.step();
      }
      assertBitsEqual(await h.params(), await ref.params(), "params");
      assertBuffersEqual(await h.stateDict(), await ref.stateDict(), "state");
      assert.deepEqual(await h.status(), { step: 4, calls: 8, skipped: 4 });
    } finally {
      h.close();
      ref.close();
    }
  },
);

matrix(
  'foundInf: with nonFinite "error" a set flag is a NonFiniteGradientError saying so (GPU: from status()), reported once, state unchanged',
  all,
  async (s) => {
    const h = twoTensors(s, 32, { nonFinite: "error" });
    try {
      run(h, 32, 2);
      const before = await h.stateDict();
      const params = await h.params();
      h.setGrads(gradsAt(32, 2, h.lengths));
      const pattern =
        /^non-finite gradient reported by the foundInf flag given to step call 3; the step was skipped/;
      const e = s.backend === "cpu"
        ? expectError(
          () => h.stepFlagged(F32_ONE),
          NonFiniteGradientError,
          pattern,
        )
        : (h.stepFlagged(F32_ONE),
          await expectReject(
            () => h.status(),
            NonFiniteGradientError,
            pattern,
          ));
      const nf = e as NonFiniteGradientError;
      assert.deepEqual([nf.foundInf, nf.tensor, nf.call], [true, "", 3]);
      // Reported once; no tensor to name.
      assert.deepEqual(await h.status(), { step: 2, calls: 3, skipped: 1 });
      assertBuffersEqual(await h.stateDict(), before, "state");
      assertBitsEqual(await h.params(), params, "params");
      h.stepFlagged(0);
      assert.deepEqual(await h.status(), { step: 3, calls: 4, skipped: 1 });
    } finally {
      h.close();
    }
  },
);

matrix(
  "foundInf: the Adam family trusts a clear flag in place of its own check (a NaN gradient reaches the parameters, as unchecked)",
  adamFamily,
  async (s) => {
    const h = twoTensors(s, 33);
    try {
      run(h, 33, 1);
      const g = gradsAt(33, 1, h.lengths);
      g[1][7] = NaN;
      h.setGrads(g);
      h.stepFlagged(0);
      assert.deepEqual(await h.status(), { step: 2, calls: 2, skipped: 0 });
      const [a, b] = await h.params();
      assert.ok(Number.isNaN(b[7]), `b[7] = ${b[7]}`);
      assert.ok(a.every(Number.isFinite), "tensor a stays finite");
      // A set flag skips whatever the gradients hold, naming no tensor.
      h.stepFlagged(1);
      assert.deepEqual(await h.status(), { step: 2, calls: 3, skipped: 1 });
    } finally {
      h.close();
    }
  },
);

matrix(
  "foundInf: MicroAdam checks the gradients as well: a NaN under a clear flag skips and names its tensor, and so does one under a set flag",
  (s) => s.family.startsWith("MicroAdam"),
  async (s) => {
    const h = twoTensors(s, 34);
    try {
      run(h, 34, 1);
      const before = await h.stateDict();
      const g = gradsAt(34, 1, h.lengths);
      g[1][7] = NaN;
      h.setGrads(g);
      h.stepFlagged(0);
      assert.deepEqual(await h.status(), {
        step: 1,
        calls: 2,
        skipped: 1,
        lastNonFiniteTensor: "b",
      });
      // The tensor is named before the flag.
      h.stepFlagged(F32_ONE);
      assert.deepEqual(await h.status(), {
        step: 1,
        calls: 3,
        skipped: 2,
        lastNonFiniteTensor: "b",
      });
      // The flag alone names none.
      h.setGrads(gradsAt(34, 1, h.lengths));
      h.stepFlagged(F32_ONE);
      assert.deepEqual(await h.status(), { step: 1, calls: 4, skipped: 3 });
      assertBuffersEqual(await h.stateDict(), before, "state");
    } finally {
      h.close();
    }
  },
);

matrix(
  "foundInf: steps in one encoder each read their own flag",
  (s) => s.backend === "gpu",
  async (s) => {
    const h = twoTensors(s, 35);
    const ref = twoTensors(s, 35);
    const set = device.createBuffer({ size: 4, usage: TENSOR_USAGE });
    const clear = device.createBuffer({ size: 4, usage: TENSOR_USAGE });
    try {
      writeTo(device, set, new Float32Array([1]));
      writeTo(device, clear, new Float32Array([0]));
      const g = gradsAt(35, 0, h.lengths);
      h.setGrads(g);
      ref.setGrads(g);
      const encoder = device.createCommandEncoder();
      const opt = h.opt as GpuOpt;
      for (const foundInf of [set, clear, set, clear, clear]) {
        opt.step({ encoder, foundInf });
      }
      device.queue.submit([encoder.finish()]);
      // The three clear ones, on the same gradients.
      for (let i = 0; i < 3; i++) ref.step();
      assert.deepEqual(await h.status(), { step: 3, calls: 5, skipped: 2 });
      assertBitsEqual(await h.params(), await ref.params(), "params");
      assertBuffersEqual(await h.stateDict(), await ref.stateDict(), "state");
    } finally {
      h.close();
      ref.close();
      set.destroy();
      clear.destroy();
    }
  },
);

matrix(
  "foundInf: a flag that is not a COPY_SRC buffer with 4 aligned bytes inside is an InvalidOptionError, nothing encoded",
  all,
  async (s) => {
    const h = twoTensors(s, 36);
    const flag = device.createBuffer({ size: 16, usage: TENSOR_USAGE });
    const storageOnly = device.createBuffer({
      size: 16,
      usage: GPUBufferUsage.STORAGE,
    });
    const mapped = device.createBuffer({
      size: 16,
      usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.MAP_WRITE,
      mappedAtCreation: true,
    });
    try {
      const step = (foundInf: unknown) => () =>
        (h.opt as { step(o: unknown): unknown }).step({ foundInf });
      if (s.backend === "cpu") {
        expectError(
          step(1),
          InvalidOptionError,
          /^step options: foundInf: expected a boolean, got 1$/,
        );
        expectError(
          step(flag),
          InvalidOptionError,
          /^step options: foundInf: expected a boolean, got /,
        );
      } else {
        const cases: [unknown, RegExp][] = [
          [
            1,
            /^step options: foundInf: expected a GPUBuffer or \{ buffer: GPUBuffer, offset\?: number \}, got 1$/,
          ],
          [{ offset: 0 }, /expected a GPUBuffer or/],
          [
            { buffer: flag, offset: 2 },
            /^step options: foundInf: offset: expected a multiple of 4 with the flag's 4 bytes inside the buffer's 16, got 2$/,
          ],
          [{ buffer: flag, offset: 16 }, /inside the buffer's 16, got 16$/],
          [{ buffer: flag, offset: -4 }, /got -4$/],
          [
            { buffer: flag, size: 2 },
            /^step options: foundInf: size: the flag is 4 bytes, got a binding of 2$/,
          ],
          [
            storageOnly,
            /^step options: foundInf: the buffer needs GPUBufferUsage\.COPY_SRC \(the flag is copied\), its usage is STORAGE$/,
          ],
          [
            mapped,
            /^step options: foundInf: the buffer is mapped; unmap it before step\(\)$/,
          ],
        ];
        for (const [value, pattern] of cases) {
          expectError(step(value), InvalidOptionError, pattern);
        }
      }
      expectError(
        () => (h.opt as { step(o: unknown): unknown }).step({ foundInfs: 1 }),
        InvalidOptionError,
        /unknown option "foundInfs" \(did you mean "foundInf"\?\)/,
      );
      assert.deepEqual(await h.status(), { step: 0, calls: 0, skipped: 0 });
    } finally {
      h.close();
      flag.destroy();
      storageOnly.destroy();
      mapped.destroy();
    }
  },
);
