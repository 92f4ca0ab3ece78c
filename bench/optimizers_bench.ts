/**
 * Step time of every optimizer, `deno bench -A bench/` (or `deno task bench`).
 *
 * - group `cpu`: one `step()` of each CPU reference optimizer on a tensor of
 *   d = 2^16 f32 elements (bf16 bits for MicroAdamCpu bf16).
 * - group `gpu`: {@link GPU_STEPS} `step()` calls of each WebGPU optimizer on
 *   d = 2^18 elements, encoded and submitted back to back, then
 *   `await device.queue.onSubmittedWorkDone()`: the time per iteration is the
 *   time of {@link GPU_STEPS} steps as an application sees it (submission and
 *   queue overheads included). Optimizer construction, pipeline compilation
 *   and the wait for earlier work are outside the timed region.
 *
 * MicroAdam runs twice per dtype: with its default weight decay, 0 (the
 * update touches only the coordinates its window holds), and with 0.01
 * (every parameter word is read, decayed and written; bench/RESULTS.md,
 * rounds 30 and 31). AdamW runs twice: as is, and given a clear found-inf
 * flag (`step({ foundInf })`), which replaces its check pass (round 38).
 *
 * Gradients are fixed pseudo-random values, uniform in [-0.5, 0.5), the same
 * at every step. Without a WebGPU adapter the `gpu` group is ignored (and
 * says why) while the `cpu` group still runs. `deno task bench`
 * (bench/compare.ts) runs this file with `LP_NUM_THREADS=1`, so that llvmpipe
 * runs each dispatch on one thread; a plain `deno bench` does not. Results:
 * bench/RESULTS.md.
 *
 * @module
 */

import {
  Adam,
  AdamCpu,
  AdamW,
  AdamWCpu,
  AMSGrad,
  AMSGradCpu,
  type CpuTensor,
  MicroAdam,
  MicroAdamCpu,
  MicroAdamTheoryCpu,
  requestDevice,
  type StepOptions,
  toBf16Array,
} from "../mod.ts";
import type { GpuOptimizer } from "../extend.ts";

/** Elements of the tensor the CPU optimizers step. */
const CPU_D = 1 << 16;
/** Elements of the tensor the GPU optimizers step. */
const GPU_D = 1 << 18;
/**
 * `step()` calls per timed GPU iteration. Deno's `onSubmittedWorkDone` waits
 * in polls about 10 ms apart, so each iteration carries 10–20 ms that is no
 * optimizer's; at 40 steps that is about a tenth of Adam's time on llvmpipe
 * (at 10 steps it was a third, and it squeezed every ratio toward 1).
 */
const GPU_STEPS = 40;

/** Deterministic values in [-0.5, 0.5) (mulberry32). */
function noise(n: number, seed: number): Float32Array<ArrayBuffer> {
  const out = new Float32Array(n);
  let a = seed >>> 0;
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
  }
  return out;
}

// ---- CPU reference optimizers, d = 2^16 -------------------------------------

const f32Tensor = (): CpuTensor[] => [{
  name: "w",
  param: noise(CPU_D, 1),
  grad: noise(CPU_D, 2),
}];
const bf16Tensor = (): CpuTensor[] => [{
  name: "w",
  param: toBf16Array(noise(CPU_D, 1)),
  grad: toBf16Array(noise(CPU_D, 2)),
}];

const cpu: [string, () => { step(): unknown }][] = [
  ["MicroAdamCpu f32", () => new MicroAdamCpu(f32Tensor(), { lr: 1e-4 })],
  [
    "MicroAdamCpu bf16",
    () => new MicroAdamCpu(bf16Tensor(), { lr: 1e-4, dtype: "bf16" }),
  ],
  ["AdamCpu", () => new AdamCpu(f32Tensor(), { lr: 1e-4 })],
  ["AdamWCpu", () => new AdamWCpu(f32Tensor(), { lr: 1e-4 })],
  ["AMSGradCpu", () => new AMSGradCpu(f32Tensor(), { lr: 1e-4 })],
  [
    "MicroAdamTheoryCpu",
    () => new MicroAdamTheoryCpu(f32Tensor(), { lr: 1e-4 }),
  ],
];

for (const [name, make] of cpu) {
  const opt = make();
  Deno.bench({
    name: `${name} step, d = 2^16`,
    group: "cpu",
    baseline: name === "AdamCpu",
    n: 30,
    warmup: 3,
    fn() {
      opt.step();
    },
  });
}

// ---- WebGPU optimizers, d = 2^18 --------------------------------------------

let device: GPUDevice | undefined;
let why = "";
try {
  device = await requestDevice();
} catch (e) {
  why = (e as Error).message;
  console.error(`gpu benches ignored: ${why}`);
}

const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
  GPUBufferUsage.COPY_DST;

// Each optimizer, its bytes per element, and the options of its steps.
const gpu: [
  string,
  2 | 4,
  (d: GPUDevice, t: TensorSpec) => GpuOptimizer,
  ((d: GPUDevice) => StepOptions)?,
][] = [
  ["MicroAdam f32", 4, (d, t) => new MicroAdam(d, [t], { lr: 1e-4 })],
  [
    "MicroAdam bf16",
    2,
    (d, t) => new MicroAdam(d, [t], { lr: 1e-4, dtype: "bf16" }),
  ],
  [
    "MicroAdam f32 weight decay 0.01",
    4,
    (d, t) => new MicroAdam(d, [t], { lr: 1e-4, weightDecay: 0.01 }),
  ],
  [
    "MicroAdam bf16 weight decay 0.01",
    2,
    (d, t) =>
      new MicroAdam(d, [t], { lr: 1e-4, dtype: "bf16", weightDecay: 0.01 }),
  ],
  ["Adam", 4, (d, t) => new Adam(d, [t], { lr: 1e-4 })],
  ["AdamW", 4, (d, t) => new AdamW(d, [t], { lr: 1e-4 })],
  // A caller's found-inf flag (clear) in place of the check pass.
  [
    "AdamW foundInf",
    4,
    (d, t) => new AdamW(d, [t], { lr: 1e-4 }),
    (d) => ({
      foundInf: d.createBuffer({ size: 4, usage: GPUBufferUsage.COPY_SRC }),
    }),
  ],
  ["AMSGrad", 4, (d, t) => new AMSGrad(d, [t], { lr: 1e-4 })],
];

interface TensorSpec {
  name: string;
  param: GPUBuffer;
  grad: GPUBuffer;
  length: number;
}

function tensor(d: GPUDevice, bytesPerElement: 2 | 4): TensorSpec {
  const values = (seed: number) =>
    bytesPerElement === 4
      ? noise(GPU_D, seed)
      : toBf16Array(noise(GPU_D, seed)) as Uint16Array<ArrayBuffer>;
  const make = (seed: number) => {
    const b = d.createBuffer({ size: GPU_D * bytesPerElement, usage });
    d.queue.writeBuffer(b, 0, values(seed));
    return b;
  };
  return { name: "w", param: make(1), grad: make(2), length: GPU_D };
}

for (const [name, bpe, make, stepOptions] of gpu) {
  const opt = device ? make(device, tensor(device, bpe)) : undefined;
  const options = device && stepOptions ? stepOptions(device) : {};
  Deno.bench({
    name: `${name} ${GPU_STEPS} steps, d = 2^18`,
    group: "gpu",
    baseline: name === "Adam",
    ignore: opt === undefined,
    n: 10,
    warmup: 2,
    async fn(b) {
      const queue = device!.queue;
      await queue.onSubmittedWorkDone();
      b.start();
      for (let i = 0; i < GPU_STEPS; i++) opt!.step(options);
      await queue.onSubmittedWorkDone();
      b.end();
    },
  });
}
