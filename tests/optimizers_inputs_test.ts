/**
 * The optimizer matrix (tests/optimizers.ts), bad options and tensors, and
 * non-finite gradients: typed errors, nothing changed.
 */

import assert from "node:assert/strict";
import {
  InvalidOptionError,
  NonFiniteGradientError,
  TensorMismatchError,
} from "../mod.ts";
import { TENSOR_USAGE } from "./gpu_util.ts";
import {
  all,
  type AnyOptions,
  assertBitsEqual,
  assertBuffersEqual,
  checkError,
  device,
  expectError,
  expectReject,
  gradsAt,
  make,
  matrix,
  newCpu,
  newGpu,
  randomData,
  run,
  type Spec,
  tensorsOf,
} from "./optimizers.ts";

// Bad options and tensors.

interface BadOption {
  options: AnyOptions & { maxBindingBytes?: number; gatherBelow?: number };
  expect: RegExp;
}

function badOptions(s: Spec): BadOption[] {
  const common: BadOption[] = [
    { options: { lr: -1 }, expect: /^lr: .*got -1$/ },
    { options: { lr: Infinity }, expect: /^lr: .*got Infinity$/ },
    {
      options: { betas: [1, 0.9] },
      expect: /^betas: expected two numbers in \[0, 1\), got \[1,0\.9\]$/,
    },
    { options: { eps: NaN }, expect: /^eps: .*got NaN$/ },
    { options: { weightDecay: -0.1 }, expect: /^weightDecay: .*got -0\.1$/ },
    {
      options: { nonFinite: "warn" as "skip" },
      expect: /^nonFinite: .*got "warn"$/,
    },
  ];
  const micro: BadOption[] = [
    { options: { window: 0 }, expect: /^window \(m\): .*got 0$/ },
    { options: { efBlockSize: 3 }, expect: /^efBlockSize \(Q\): .*got 3$/ },
    {
      options: { topkBlockSize: 70000 },
      expect: /^topkBlockSize \(D\): .*got 70000$/,
    },
    { options: { density: 0 }, expect: /^density: .*got 0$/ },
    { options: { density: 1.5 }, expect: /^density: .*got 1\.5$/ },
    { options: { dtype: "f16" as "f32" }, expect: /^dtype: .*got "f16"$/ },
  ];
  const gpu: BadOption[] = [
    {
      options: { maxBindingBytes: 100 },
      expect: /^maxBindingBytes: .*got 100$/,
    },
    { options: { gatherBelow: -1 }, expect: /^gatherBelow: .*got -1$/ },
  ];
  return [
    ...common,
    ...(s.family === "MicroAdam" ? micro : []),
    ...(s.family === "MicroAdamTheory"
      ? micro.filter((b) =>
        "efBlockSize" in b.options || "density" in b.options
      )
      : []),
    ...(s.backend === "gpu" ? gpu : []),
  ];
}

function describeOptions(o: object): string {
  return Object.entries(o).map(([k, v]) => `${k}: ${String(v)}`).join(", ");
}

matrix(
  "bad input: invalid options are InvalidOptionError naming the option and the value",
  all,
  (s) => {
    for (const b of badOptions(s)) {
      try {
        expectError(
          () => make(s, tensorsOf([new Float32Array(8)]), b.options),
          InvalidOptionError,
          b.expect,
        );
      } catch (e) {
        throw new Error(
          `${describeOptions(b.options)}: ${(e as Error).message}`,
        );
      }
    }
    // Group overrides are checked as well, naming the group.
    expectError(
      () =>
        make(s, [{ params: tensorsOf([new Float32Array(8)]) }, {
          params: tensorsOf([new Float32Array(8)], "u"),
          lr: -2,
        }]),
      InvalidOptionError,
      /^group 1 lr: .*got -2$/,
    );
    expectError(
      () =>
        make(s, [{
          params: tensorsOf([new Float32Array(8)]),
          weightDecay: NaN,
        }]),
      InvalidOptionError,
      /^group 0 weightDecay: .*got NaN$/,
    );
  },
);

matrix(
  "bad input: a CPU tensor whose param and grad lengths differ is a TensorMismatchError",
  (s) => s.backend === "cpu",
  (s) => {
    const arr = (n: number) =>
      s.dtype === "bf16" ? new Uint16Array(n) : new Float32Array(n);
    expectError(
      () => newCpu(s, [{ name: "w", param: arr(3), grad: arr(4) }], {}),
      TensorMismatchError,
      /^tensor 0 \("w"\): param has 3 elements but grad has 4$/,
    );
    // The wrong element type for the dtype.
    const wrong = s.dtype === "bf16" ? new Float32Array(3) : new Uint16Array(3);
    expectError(
      () => newCpu(s, [{ name: "w", param: wrong, grad: wrong.slice() }], {}),
      TensorMismatchError,
      /^tensor 0 \("w"\): param should be a .* for dtype/,
    );
    expectError(
      () => newCpu(s, [{ name: "w", param: arr(0), grad: arr(0) }], {}),
      TensorMismatchError,
      /^tensor 0 \("w"\): expected at least one element, got 0$/,
    );
  },
);

matrix(
  "bad input: a CPU tensor replaced by one of another length is a TensorMismatchError at step(), nothing counted",
  (s) => s.backend === "cpu",
  (s) => {
    const arr = (n: number) =>
      s.dtype === "bf16" ? new Uint16Array(n) : new Float32Array(n);
    const opt = newCpu(s, [{ name: "w", param: arr(4), grad: arr(4) }], {});
    opt.step();
    opt.paramGroups[0].params[0] = { name: "w", param: arr(5), grad: arr(5) };
    expectError(
      () => opt.step(),
      TensorMismatchError,
      /^tensor 0 \("w"\): expected 4 elements \(as at construction\), got 5$/,
    );
    assert.deepEqual(opt.status(), { step: 1, calls: 1, skipped: 0 });
    opt.dispose();
  },
);

matrix(
  "bad input: GPU buffers too small, shared by param and grad, or a bad length are TensorMismatchError",
  (s) => s.backend === "gpu",
  (s) => {
    const bpe = s.dtype === "bf16" ? 2 : 4;
    const made: GPUBuffer[] = [];
    const buf = (bytes: number, usage = TENSOR_USAGE) => {
      const b = device.createBuffer({ size: bytes, usage });
      made.push(b);
      return b;
    };
    try {
      const n = 10;
      const bytes = Math.ceil(n * bpe / 4) * 4;
      expectError(
        () =>
          newGpu(s, [{
            name: "w",
            param: buf(bytes - 4),
            grad: buf(bytes),
            length: n,
          }], {}),
        TensorMismatchError,
        new RegExp(
          `^tensor 0 \\("w"\\): param buffer is ${
            bytes - 4
          } bytes, expected at least ${bytes}`,
        ),
      );
      expectError(
        () =>
          newGpu(s, [{
            name: "w",
            param: buf(bytes),
            grad: buf(bytes - 4),
            length: n,
          }], {}),
        TensorMismatchError,
        new RegExp(
          `^tensor 0 \\("w"\\): grad buffer is ${
            bytes - 4
          } bytes, expected at least ${bytes}`,
        ),
      );
      const same = buf(bytes);
      expectError(
        () =>
          newGpu(s, [{ name: "w", param: same, grad: same, length: n }], {}),
        TensorMismatchError,
        /^tensor 0 \("w"\): param and grad must be different buffers$/,
      );
      for (const length of [0, 2.5]) {
        expectError(
          () =>
            newGpu(s, [{
              name: "w",
              param: buf(bytes),
              grad: buf(bytes),
              length,
            }], {}),
          TensorMismatchError,
          new RegExp(
            `^tensor 0 \\("w"\\): length must be an integer >= 1, got ${length}$`,
          ),
        );
      }
      // Offset pushes the end past the buffer.
      expectError(
        () =>
          newGpu(s, [{
            name: "w",
            param: buf(bytes),
            grad: buf(bytes),
            length: n,
            offset: 2,
          }], {}),
        TensorMismatchError,
        /^tensor 0 \("w"\): param buffer is \d+ bytes, expected at least \d+ \(offset 2 \+ length 10/,
      );
    } finally {
      for (const b of made) b.destroy();
    }
  },
);

matrix(
  'bad input: MicroAdam refuses nonFinite "unchecked" (it checks inside its first kernel) with an InvalidOptionError saying why',
  (s) => s.family === "MicroAdam" || s.family === "MicroAdamTheory",
  (s) => {
    expectError(
      () =>
        make(s, tensorsOf([new Float32Array(8)]), { nonFinite: "unchecked" }),
      InvalidOptionError,
      /^nonFinite: MicroAdam checks gradients inside its first kernel at no extra cost; expected "skip" or "error", got "unchecked"$/,
    );
  },
);

matrix(
  'options: the Adam family takes nonFinite "unchecked"',
  (s) => !s.family.startsWith("MicroAdam"),
  async (s) => {
    const h = make(s, tensorsOf([new Float32Array(8)]), {
      nonFinite: "unchecked",
    });
    try {
      assert.equal(h.opt.options.nonFinite, "unchecked");
      // The GPU optimizers show the policy as a property as well.
      if ("nonFinite" in h.opt) assert.equal(h.opt.nonFinite, "unchecked");
      run(h, 30, 2);
      assert.deepEqual(await h.status(), { step: 2, calls: 2, skipped: 0 });
    } finally {
      h.close();
    }
  },
);

matrix(
  "bad input: a GPU buffer without STORAGE usage is a TensorMismatchError naming the usage it has",
  (s) => s.backend === "gpu",
  (s) => {
    const p = device.createBuffer({ size: 64, usage: TENSOR_USAGE });
    const g = device.createBuffer({
      size: 64,
      usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
    try {
      expectError(
        () => newGpu(s, [{ name: "w", param: p, grad: g, length: 10 }], {}),
        TensorMismatchError,
        /^tensor 0 \("w"\): grad buffer needs GPUBufferUsage\.STORAGE, its usage is COPY_SRC\|COPY_DST$/,
      );
    } finally {
      p.destroy();
      g.destroy();
    }
  },
);

matrix(
  "bad input: a bf16 tensor at an odd offset is a TensorMismatchError",
  (s) => s.backend === "gpu" && s.dtype === "bf16",
  (s) => {
    const p = device.createBuffer({ size: 64, usage: TENSOR_USAGE });
    const g = device.createBuffer({ size: 64, usage: TENSOR_USAGE });
    try {
      expectError(
        () =>
          newGpu(
            s,
            [{ name: "w", param: p, grad: g, length: 10, offset: 1 }],
            {},
          ),
        TensorMismatchError,
        /^tensor 0 \("w"\): bf16 tensors are packed two per u32, so offset must be even, got 1$/,
      );
    } finally {
      p.destroy();
      g.destroy();
    }
  },
);

matrix(
  "tensors: overlapping tensors are a TensorMismatchError",
  all,
  (s) => {
    if (s.backend === "cpu") {
      const Arr = s.dtype === "bf16" ? Uint16Array : Float32Array;
      const params = new Arr(20);
      const grads = new Arr(20);
      expectError(
        () =>
          newCpu(s, [
            {
              name: "a",
              param: params.subarray(0, 10),
              grad: grads.subarray(0, 10),
            },
            {
              name: "b",
              param: params.subarray(5, 15),
              grad: grads.subarray(5, 15),
            },
          ], {}),
        TensorMismatchError,
        /"a".*"b".*overlap/,
      );
      return;
    }
    const p = device.createBuffer({ size: 64, usage: TENSOR_USAGE });
    const g = device.createBuffer({ size: 64, usage: TENSOR_USAGE });
    try {
      expectError(
        () =>
          newGpu(s, [
            { name: "a", param: p, grad: g, length: 10 },
            { name: "b", param: p, grad: g, length: 10, offset: 6 },
          ], {}),
        TensorMismatchError,
        /^tensors 0 \("a"\) and 1 \("b"\) overlap in the same buffer \(elements 0\.\.9 and 6\.\.15\)$/,
      );
      // One tensor's gradient is another's parameter buffer.
      expectError(
        () =>
          newGpu(s, [
            { name: "a", param: p, grad: g, length: 4 },
            { name: "b", param: g, grad: p, length: 4, offset: 8 },
          ], {}),
        TensorMismatchError,
        /tensors 0 \("a"\) and 1 \("b"\) use one buffer both for parameters and for gradients/,
      );
    } finally {
      p.destroy();
      g.destroy();
    }
  },
);

// ---------------------------------------------------------------------------
// Non-finite gradients.

matrix(
  "non-finite: NaN / −Infinity gradients skip the step; state and params stay bit-identical",
  all,
  async (s) => {
    const h = make(s, [{ name: "a", data: randomData(18, [40])[0] }, {
      name: "b",
      data: randomData(19, [4097])[0],
    }], { lr: s.lr });
    try {
      run(h, 18, 3);
      const before = await h.stateDict();
      const params = await h.params();
      const bytes = h.opt.stateBytes();
      const bad: [string, number, number][] = [["b", NaN, 4000], [
        "a",
        -Infinity,
        7,
      ]];
      for (const [k, [name, value, at]] of bad.entries()) {
        const g = gradsAt(18, 3, h.lengths);
        g[name === "a" ? 0 : 1][at] = value;
        h.setGrads(g);
        h.step();
        const st = await h.status();
        assert.deepEqual(
          [st.step, st.calls, st.skipped],
          [3, 4 + k, 1 + k],
          `after the ${value} step`,
        );
        if ("lastNonFiniteTensor" in st) {
          assert.equal(st.lastNonFiniteTensor, name);
        }
      }
      const after = await h.stateDict();
      assertBuffersEqual(after, before, "state after skips");
      assert.deepEqual(
        [after.step, after.calls, after.skipped, after.ring],
        [before.step, before.calls + 2, 2, before.ring],
      );
      assertBitsEqual(await h.params(), params, "params after skips");
      assert.equal(h.opt.stateBytes(), bytes);
      // The next finite step applies.
      run(h, 18, 1, 3);
      assert.equal((await h.status()).step, 4);
    } finally {
      h.close();
    }
  },
);

matrix(
  'non-finite: with nonFinite "error" a NonFiniteGradientError names the tensor (GPU: from status()), state unchanged',
  all,
  async (s) => {
    const h = make(s, [{ name: "a", data: randomData(20, [40])[0] }, {
      name: "bias",
      data: randomData(21, [3])[0],
    }], { lr: s.lr, nonFinite: "error" });
    try {
      run(h, 20, 2);
      const before = await h.stateDict();
      const params = await h.params();
      const g = gradsAt(20, 2, h.lengths);
      g[1][2] = NaN;
      h.setGrads(g);
      let e: Error;
      if (s.backend === "cpu") {
        e = expectError(() => h.step(), NonFiniteGradientError, /"bias"/);
      } else {
        h.step(); // found on the GPU; reported by the next status()/step()
        e = await expectReject(
          () => h.status(),
          NonFiniteGradientError,
          /"bias"/,
        );
      }
      assert.equal((e as NonFiniteGradientError).tensor, "bias");
      assert.equal((e as NonFiniteGradientError).call, 3);
      assert.match(e.message, /at step call 3/);
      const st = await h.status(); // reported once
      assert.deepEqual([st.step, st.calls, st.skipped], [2, 3, 1]);
      assertBuffersEqual(await h.stateDict(), before, "state");
      assertBitsEqual(await h.params(), params, "params");
      run(h, 20, 1, 3);
      assert.equal((await h.status()).step, 3);
    } finally {
      h.close();
    }
  },
);

matrix(
  'non-finite: GPU with nonFinite "error": the next step() throws once the skip is known, and is not counted',
  (s) => s.backend === "gpu",
  async (s) => {
    const h = make(s, tensorsOf(randomData(22, [64])), {
      lr: s.lr,
      nonFinite: "error",
    });
    try {
      const g = gradsAt(22, 0, h.lengths);
      g[0][5] = Infinity;
      h.setGrads(g);
      h.step();
      await device.queue.onSubmittedWorkDone();
      await new Promise((r) => setTimeout(r, 20));
      run(h, 22, 1, 1);
      assert.fail("expected the second step() to throw");
    } catch (e) {
      checkError(e, NonFiniteGradientError, [/"t0" at step call 1/]);
      // The throwing call did not step: calls still 1.
      const st = await h.status();
      assert.deepEqual([st.step, st.calls, st.skipped], [0, 1, 1]);
    } finally {
      h.close();
    }
  },
);

// ---------------------------------------------------------------------------
