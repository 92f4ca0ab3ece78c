/**
 * GPU MicroAdam's state: its size against the formula, checkpoints (GPU <->
 * CPU, bit for bit) and disposal.
 */

import assert from "node:assert/strict";
import { MicroAdam } from "../src/optim/microadam.ts";
import { Adam, AdamW, AMSGrad } from "../src/optim/adam.ts";
import type { PlacementOptions } from "../src/optim/gpu_optimizer.ts";
import type { DType, MicroAdamOptions } from "../src/core/options.ts";
import type { OptimizerState } from "../src/core/state.ts";
import { MicroAdamCpu } from "../src/reference/microadam.ts";
import type { GpuTensor } from "../src/gpu/tensors.ts";
import { readRanges } from "../src/gpu/buffers.ts";
import { loadCheckpoint, saveCheckpoint } from "../src/checkpoint/file.ts";
import {
  assertSameBytes,
  bufferFrom,
  compareBf16,
  compareF32,
  randomBf16,
  randomF32,
  rng,
  stateDifference,
  TENSOR_USAGE,
  testSeed,
  writeTo,
} from "./gpu_util.ts";
import { type Arr, device, Twin } from "./optim_microadam.ts";

// ---- 8. Memory -----------------------------------------------------------

Deno.test("memory: every batch's window, and every batch's codes, in one buffer (packBuffers); state bytes the same as the CPU reference's", () => {
  const sizes = [5000, 70001, 33, 4097];
  const tensors = sizes.map((n) => ({
    param: device.createBuffer({ size: 4 * n, usage: TENSOR_USAGE }),
    grad: device.createBuffer({ size: 4 * n, usage: TENSOR_USAGE }),
    length: n,
  }));
  const made: GPUBufferDescriptor[] = [];
  const create = device.createBuffer;
  device.createBuffer = (d: GPUBufferDescriptor) => {
    made.push(d);
    return create.call(device, d);
  };
  let opt: MicroAdam | undefined;
  try {
    // Bindings of at most 32 KiB: many batches (lanes or not), none gathered.
    opt = new MicroAdam(device, tensors, {
      gatherBelow: 0,
      maxBindingBytes: 32768,
    });
    const labelled = (l: string) => made.filter((d) => d.label === l);
    assert.equal(labelled("microadam window").length, 1);
    const [codes] = labelled("microadam EF codes (two halves)");
    assert.equal(labelled("microadam EF codes (two halves)").length, 1);
    // Two halves of ceil(len / 8) words per segment, each batch's range at
    // a multiple of the offset alignment: at most one gap per batch (each
    // batch has at least one segment table).
    const batches = labelled("microadam segments").length;
    assert.ok(batches > 4, `${batches} segment tables`);
    const align = device.limits.minStorageBufferOffsetAlignment;
    const words = sizes.reduce((s, n) => s + 2 * 4 * Math.ceil(n / 8), 0);
    assert.ok(
      codes.size >= words &&
        codes.size < words + 2 * 4 * batches + batches * align,
      `codes buffer ${codes.size} bytes for ${words} bytes of codes`,
    );
    const cpu = new MicroAdamCpu(
      sizes.map((n) => ({
        param: new Float32Array(n),
        grad: new Float32Array(n),
      })),
      {},
    );
    assert.equal(opt.stateBytes(), cpu.stateBytes());
    assert.equal(opt.memoryBytes().state, opt.stateBytes());
  } finally {
    device.createBuffer = create;
    opt?.dispose();
    for (const t of tensors) {
      t.param.destroy();
      t.grad.destroy();
    }
  }
});

Deno.test("memory: MicroAdam state at d = 2^20 matches the formula within 2 %; Adam 8 B/param, AMSGrad 12", () => {
  const d = 2 ** 20;
  const param = device.createBuffer({ size: 4 * d, usage: TENSOR_USAGE });
  const grad = device.createBuffer({ size: 4 * d, usage: TENSOR_USAGE });
  const tensors = [{ param, grad, length: d }];
  const opts: MicroAdam[] = [];
  try {
    for (const dtype of ["f32", "bf16"] as const) {
      const opt = new MicroAdam(device, tensors, { dtype });
      opts.push(opt);
      const o = opt.options;
      const k = Math.ceil(o.topkBlockSize * o.density);
      const perParam = 0.5 + 4 * o.window * k / o.topkBlockSize +
        4 / o.efBlockSize;
      const measured = opt.stateBytes() / d;
      console.log(
        `MicroAdam ${dtype} d=2^20, m=${o.window}, density=${o.density}, D=${o.topkBlockSize}, Q=${o.efBlockSize}: ` +
          `formula 0.5 + 4·${o.window}·${k}/${o.topkBlockSize} + 4/${o.efBlockSize} = ${
            perParam.toFixed(6)
          } B/param; ` +
          `stateBytes ${opt.stateBytes()} = ${
            measured.toFixed(6)
          } B/param; workspace ${opt.memoryBytes().workspace} B`,
      );
      assert.ok(
        Math.abs(measured - perParam) / perParam <= 0.02,
        `${measured} B/param vs formula ${perParam}`,
      );
      assert.equal(opt.memoryBytes().state, opt.stateBytes());
      // Same bytes as the CPU reference holds (the state layouts are shared).
      const cpu = new MicroAdamCpu([{
        param: dtype === "bf16" ? new Uint16Array(d) : new Float32Array(d),
        grad: dtype === "bf16" ? new Uint16Array(d) : new Float32Array(d),
      }], { dtype });
      assert.equal(opt.stateBytes(), cpu.stateBytes());
    }
    const adam = new Adam(device, tensors);
    const adamw = new AdamW(device, tensors);
    const ams = new AMSGrad(device, tensors);
    try {
      assert.equal(adam.stateBytes(), 8 * d);
      assert.equal(adamw.stateBytes(), 8 * d);
      assert.equal(ams.stateBytes(), 12 * d);
      console.log(
        `Adam ${adam.stateBytes() / d} B/param, AdamW ${
          adamw.stateBytes() / d
        }, AMSGrad ${ams.stateBytes() / d}`,
      );
    } finally {
      adam.dispose();
      adamw.dispose();
      ams.dispose();
    }
  } finally {
    for (const o of opts) o.dispose();
    param.destroy();
    grad.destroy();
  }
});

// ---- 9. Checkpoints ------------------------------------------------------

/** Deterministic gradients of call `s` (1-based). */
function gradsAt(
  seed: number,
  s: number,
  sizes: number[],
  dtype: DType,
): Arr[] {
  const r = rng((seed ^ Math.imul(s, 0x9e3779b1)) >>> 0);
  return sizes.map((n) =>
    dtype === "bf16" ? randomBf16(r, n, 0.5) : randomF32(r, n, 0.5)
  );
}

interface GpuRun {
  opt: MicroAdam;
  tensors: GpuTensor[];
  bpe: number;
}

function gpuRun(
  params: Arr[],
  dtype: DType,
  options: MicroAdamOptions & PlacementOptions,
): GpuRun {
  const tensors = params.map((p, i) => ({
    name: `t${i}`,
    length: p.length,
    param: bufferFrom(device, p),
    grad: bufferFrom(
      device,
      dtype === "bf16" ? new Uint16Array(p.length) : new Float32Array(p.length),
    ),
  }));
  return {
    opt: new MicroAdam(device, tensors, { ...options, dtype }),
    tensors,
    bpe: dtype === "bf16" ? 2 : 4,
  };
}

function stepGpu(run: GpuRun, grads: Arr[]): void {
  grads.forEach((g, i) => writeTo(device, run.tensors[i].grad, g));
  run.opt.step();
}

async function paramsOf(run: GpuRun): Promise<Arr[]> {
  const bytes = await readRanges(
    device,
    run.tensors.map((t) => ({
      buffer: t.param,
      offset: 0,
      size: t.length * run.bpe,
    })),
  );
  return bytes.map((b, i) =>
    run.bpe === 2
      ? new Uint16Array(b.buffer, 0, run.tensors[i].length)
      : new Float32Array(b.buffer, 0, run.tensors[i].length)
  );
}

function disposeRun(run: GpuRun): void {
  run.opt.dispose();
  for (const t of run.tensors) {
    t.param.destroy();
    t.grad.destroy();
  }
}

function assertParamsClose(got: Arr[], want: Arr[], label: string): string {
  if (got[0] instanceof Uint16Array) {
    let one = 0;
    let exact = 0;
    let n = 0;
    got.forEach((g, i) => {
      const c = compareBf16(g as Uint16Array, want[i] as Uint16Array);
      one += c.withinOne * c.n;
      exact += c.exact * c.n;
      n += c.n;
    });
    assert.ok(one / n >= 0.999, `${label}: ${one / n} within 1 ulp`);
    return `exact ${(100 * exact / n).toFixed(4)} %, within 1 ulp ${
      (100 * one / n).toFixed(4)
    } %`;
  }
  let worst = 0;
  got.forEach((g, i) => {
    const c = compareF32(g as Float32Array, want[i] as Float32Array);
    assert.ok(c.rel <= 1e-5, `${label}: tensor ${i} relative error ${c.rel}`);
    worst = Math.max(worst, c.rel);
  });
  return `max relative error ${worst.toExponential(3)}`;
}

for (const dtype of ["f32", "bf16"] as const) {
  Deno.test(`checkpoint, ${dtype}: 20 steps + save + load into a fresh optimizer + 10 == 30 straight, bit for bit; GPU <-> CPU portable`, async () => {
    const seed = testSeed(`checkpoint ${dtype}`);
    const sizes = [3000, 5, 70001, 1, 299];
    const r = rng(seed);
    const p0 = sizes.map((n) =>
      dtype === "bf16" ? randomBf16(r, n) : randomF32(r, n)
    );
    const options = { lr: 5e-3, window: 4, density: 0.02, weightDecay: 0.01 };
    // Fewer, smaller bindings: 70001 is split in 12288-element chunks, nothing gathered.
    const otherPlacement = { maxBindingBytes: 65536, gatherBelow: 0 };
    const grads = (s: number) => gradsAt(seed, s, sizes, dtype);
    const dir = await Deno.makeTempDir({ prefix: "microadam-gpu-ckpt-" });
    const runs: GpuRun[] = [];
    const newRun = (p: Arr[], o: PlacementOptions = {}) => {
      const run = gpuRun(p, dtype, { ...options, ...o });
      runs.push(run);
      return run;
    };
    try {
      // Straight: 30 steps on the GPU, and on the CPU (with a checkpoint at 20).
      const straight = newRun(p0);
      for (let s = 1; s <= 30; s++) stepGpu(straight, grads(s));
      const want = await paramsOf(straight);
      const wantState = await straight.opt.stateDict();

      const cpuParams = p0.map((p) => p.slice());
      const cpuGrads = p0.map((p) => p.slice().fill(0));
      const cpu = new MicroAdamCpu(
        cpuParams.map((param, i) => ({
          name: `t${i}`,
          param,
          grad: cpuGrads[i],
        })),
        { ...options, dtype },
      );
      let cpuAt20: { params: Arr[]; path: string } | undefined;
      for (let s = 1; s <= 30; s++) {
        grads(s).forEach((g, i) => cpuGrads[i].set(g));
        cpu.step();
        if (s === 20) {
          cpuAt20 = {
            params: cpuParams.map((p) => p.slice()),
            path: `${dir}/cpu20.ckpt`,
          };
          await saveCheckpoint(cpuAt20.path, cpu.stateDict());
        }
      }

      // 20 steps, save, fresh optimizer on fresh buffers, load, 10 steps.
      const first = newRun(p0);
      for (let s = 1; s <= 20; s++) stepGpu(first, grads(s));
      const path = `${dir}/gpu20.ckpt`;
      await first.opt.save(path);
      const p20 = await paramsOf(first);
      const state20 = await first.opt.stateDict();
      for (const placement of [{}, otherPlacement]) {
        const resumed = newRun(p20.map((p) => p.slice()), placement);
        await resumed.opt.load(path);
        assert.equal((await resumed.opt.status()).step, 20);
        for (let s = 21; s <= 30; s++) stepGpu(resumed, grads(s));
        const got = await paramsOf(resumed);
        got.forEach((g, i) =>
          assertSameBytes(
            g,
            want[i],
            `resumed (placement ${
              JSON.stringify(placement)
            }): params of t${i} differ from the straight run`,
          )
        );
        assert.equal(
          stateDifference(await resumed.opt.stateDict(), wantState),
          undefined,
          `resumed (placement ${JSON.stringify(placement)}): state`,
        );
      }

      // GPU state at 20 -> MicroAdamCpu -> 10 CPU steps == the straight CPU run.
      const cpuParams2 = p20.map((p) => p.slice());
      const cpuGrads2 = p20.map((p) => p.slice().fill(0));
      const cpu2 = new MicroAdamCpu(
        cpuParams2.map((param, i) => ({
          name: `t${i}`,
          param,
          grad: cpuGrads2[i],
        })),
        { ...options, dtype },
      );
      cpu2.loadStateDict(await loadCheckpoint(path));
      assert.equal(stateDifference(cpu2.stateDict(), state20), undefined);
      for (let s = 21; s <= 30; s++) {
        grads(s).forEach((g, i) => cpuGrads2[i].set(g));
        cpu2.step();
      }
      assert.equal(
        stateDifference(cpu2.stateDict(), cpu.stateDict()),
        undefined,
        "GPU->CPU state",
      );
      const gpuToCpu = assertParamsClose(
        cpuParams2,
        cpuParams,
        "GPU->CPU params",
      );

      // CPU state at 20 -> fresh GPU optimizer -> 10 GPU steps == the straight GPU run.
      assert.ok(cpuAt20);
      const fromCpu = newRun(cpuAt20.params, otherPlacement);
      await fromCpu.opt.load(cpuAt20.path);
      for (let s = 21; s <= 30; s++) stepGpu(fromCpu, grads(s));
      assert.equal(
        stateDifference(await fromCpu.opt.stateDict(), wantState),
        undefined,
        "CPU->GPU state",
      );
      const cpuToGpu = assertParamsClose(
        await paramsOf(fromCpu),
        want,
        "CPU->GPU params",
      );
      // And the straight runs agree with each other.
      const straightVs = assertParamsClose(
        want,
        cpuParams,
        "GPU vs CPU straight",
      );
      assert.equal(stateDifference(wantState, cpu.stateDict()), undefined);
      console.log(
        `checkpoint ${dtype}: GPU->CPU ${gpuToCpu}; CPU->GPU ${cpuToGpu}; straight GPU vs CPU ${straightVs}`,
      );
    } finally {
      for (const run of runs) disposeRun(run);
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("checkpoint: a GPU state dict round-trips through loadStateDict unchanged", async () => {
  const seed = testSeed("state round trip");
  const twin = new Twin({
    dtype: "bf16",
    sizes: [5000, 3],
    seed,
    options: { maxBindingBytes: 8192 + 64, topkBlockSize: 512 },
  });
  try {
    for (let s = 0; s < 4; s++) twin.step();
    const state: OptimizerState = await twin.gpu.stateDict();
    // Load a different state first, so the second load must really write.
    twin.gpu.loadStateDict(twin.cpu.stateDict());
    twin.step();
    twin.gpu.loadStateDict(state);
    assert.equal(stateDifference(await twin.gpu.stateDict(), state), undefined);
  } finally {
    twin.dispose();
  }
});

// ---- 10. Disposal --------------------------------------------------------

Deno.test("dispose: every buffer the optimizer created is destroyed, user buffers are not; later use throws", async () => {
  const n = 5000;
  const make = (i: number) => ({
    name: `t${i}`,
    length: n,
    param: bufferFrom(device, new Float32Array(n).fill(1)),
    grad: bufferFrom(device, new Float32Array(n).fill(0.5)),
  });
  const tensors = [make(0), make(1), make(2)];
  // Record every buffer created while the optimizer lives.
  const created: {
    buffer: GPUBuffer;
    destroyed: boolean;
    inConstructor: boolean;
  }[] = [];
  let inConstructor = true;
  const original = device.createBuffer;
  device.createBuffer = function (desc: GPUBufferDescriptor): GPUBuffer {
    const buffer = original.call(device, desc);
    const rec = { buffer, destroyed: false, inConstructor };
    const destroy = buffer.destroy;
    buffer.destroy = function () {
      rec.destroyed = true;
      return destroy.call(buffer);
    };
    created.push(rec);
    return buffer;
  };
  let opt: MicroAdam;
  try {
    opt = new MicroAdam(device, tensors, { nonFinite: "error" });
    inConstructor = false;
    opt.step();
    opt.step();
    assert.equal((await opt.status()).step, 2);
    await opt.stateDict();
  } finally {
    device.createBuffer = original;
  }
  const mem = opt.memoryBytes();
  const ctorBytes = created.filter((c) => c.inConstructor).reduce(
    (s, c) => s + c.buffer.size,
    0,
  );
  assert.ok(opt.stateBytes() > 0);
  assert.equal(mem.state, opt.stateBytes());
  assert.equal(
    mem.state + mem.workspace,
    ctorBytes,
    "memoryBytes counts every buffer the constructor made",
  );
  opt.dispose();
  const alive = created.filter((c) => !c.destroyed);
  assert.equal(
    alive.length,
    0,
    `${alive.length} of ${created.length} buffers not destroyed: ${
      alive.map((c) => c.buffer.label).join(", ")
    }`,
  );
  assert.throws(
    () => opt.step(),
    (e) => e instanceof Error && /disposed/.test(e.message),
  );
  await assert.rejects(opt.status(), /disposed/);
  await assert.rejects(opt.stateDict(), /disposed/);
  assert.throws(() => opt.loadStateDict({} as OptimizerState), /disposed/);
  opt.dispose(); // twice is fine
  // The user's buffers survive and hold the two applied steps.
  const p = await readRanges(device, [{
    buffer: tensors[0].param,
    offset: 0,
    size: 4 * n,
  }]);
  const values = new Float32Array(p[0].buffer);
  assert.ok(values.every((v) => v <= 1) && values.some((v) => v < 1));
  for (const t of tensors) {
    t.param.destroy();
    t.grad.destroy();
  }
});

Deno.test("dispose: `using` disposes at the end of the block", async () => {
  const param = bufferFrom(device, new Float32Array(100).fill(1));
  const grad = bufferFrom(device, new Float32Array(100).fill(1));
  let escaped: MicroAdam | undefined;
  let escapedAdam: Adam | undefined;
  {
    using opt = new MicroAdam(device, [{ param, grad, length: 100 }], {
      lr: 0.1,
    });
    using adam = new Adam(device, [{ param, grad, length: 100 }]);
    escaped = opt;
    escapedAdam = adam;
    opt.step();
    assert.equal((await opt.status()).step, 1);
  }
  assert.throws(() => escaped.step(), /disposed/);
  assert.throws(() => escapedAdam.step(), /disposed/);
  param.destroy();
  grad.destroy();
});
