/**
 * Demo: MicroAdam, Adam, AdamW and AMSGrad train the same model on WebGPU.
 *
 * The model is an online least-squares regression `y ≈ W·x` with `W` of
 * `outputs × 1024` parameters, fresh data every step, input features whose
 * scales spread over two orders of magnitude (an ill-conditioned problem, the
 * kind Adam's per-coordinate scaling is for) and a dense random teacher plus
 * noise. The data, the residuals and the gradient are computed on the GPU by
 * the small WGSL kernels below; the optimizers only see the parameter and
 * gradient buffers. Nothing is read back while training: the exact
 * population loss is written to a GPU buffer every `--eval-every` steps and
 * read once at the end.
 *
 *   deno run -A demo.ts [--size N] [--steps N] [--batch N] [--eval-every N]
 *                       [--lr-microadam X] [--lr-adam X] [--lr-adamw X]
 *                       [--lr-amsgrad X] [--optimizers a,b] [--seed N]
 *                       [--constant-lr] [--cpu] [--help]
 *
 * `--cpu` runs the same problem (same data stream) with the CPU optimizers
 * and a JavaScript gradient, without touching WebGPU.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  Adam,
  AdamCpu,
  AdamW,
  AdamWCpu,
  AMSGrad,
  AMSGradCpu,
  constant,
  cosineDecay,
  type CpuTensor,
  type GpuTensor,
  GpuUnavailableError,
  MicroAdam,
  MicroAdamCpu,
  requestDevice,
  type Schedule,
} from "./mod.ts";
import type { CpuOptimizer } from "./extend.ts";

// ---- Problem ----------------------------------------------------------------

/** Input features; the parameter count is `outputs × INPUTS`. */
const INPUTS = 1024;
/** Feature scales are log-uniform in [SCALE_LO, SCALE_HI]. */
const SCALE_LO = 0.1;
const SCALE_HI = 10;
/** Standard deviation of the label noise (loss floor σ²/2). */
const SIGMA = 0.05;
/** Workgroups of the loss reduction (each writes one partial sum). */
const EVAL_GROUPS = 64;

/**
 * Learning rates from a sweep on this problem with the defaults (262,144
 * parameters, 200 steps, batch 64, seed 1, cosine decay), on a √2 grid, each
 * optimizer tuned on its own; final population loss:
 *
 * | lr        | 7e-4    | 1e-3    | 1.4e-3  | 2e-3    | 2.8e-3  | 4e-3    |
 * | --------- | ------- | ------- | ------- | ------- | ------- | ------- |
 * | MicroAdam | 0.0288  | 0.0219  | 0.0197  | 0.0201  | 0.0226  | 0.0281  |
 * | Adam      | 0.00482 | 0.00318 | 0.00270 | 0.00277 | 0.00342 | 0.00523 |
 * | AdamW     | 0.00482 | 0.00318 | 0.00270 | 0.00277 | 0.00342 | 0.00521 |
 * | AMSGrad   | 0.00483 | 0.00319 | 0.00271 | 0.00278 | 0.00343 | 0.00524 |
 *
 * MicroAdam's best rate lands on Adam's here. Its rebuilt moments make the
 * step of a coordinate that is selected at every step grow toward ≈ 6.5×
 * Adam's (spec §A notes), but with 1 % density on a dense gradient the
 * selection moves from step to step, and that effect does not dominate.
 */
const TUNED_LR = {
  microadam: 1.4e-3,
  adam: 1.4e-3,
  adamw: 1.4e-3,
  amsgrad: 1.4e-3,
} as const;

type OptName = keyof typeof TUNED_LR;
const NAMES: Record<OptName, string> = {
  microadam: "MicroAdam",
  adam: "Adam",
  adamw: "AdamW",
  amsgrad: "AMSGrad",
};

interface Dims {
  inputs: number;
  outputs: number;
  batch: number;
  size: number;
}

/** What one optimizer's run produced. */
interface RunResult {
  name: OptName;
  lr: number;
  /** Population loss at each evaluation step. */
  losses: number[];
  stateBytes: number;
  workspaceBytes?: number;
  /** Median optimizer time per step from GPU timestamps (ms), if available. */
  optMs?: number;
  wallMs: number;
  skipped: number;
}

// PCG hash (O'Neill), shared bit for bit by the WGSL and the JS data streams.
function pcg(v: number): number {
  const s = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const w = Math.imul(((s >>> ((s >>> 28) + 4)) ^ s) >>> 0, 277803737) >>> 0;
  return ((w >>> 22) ^ w) >>> 0;
}

/** Key of a random stream: 0 is the teacher, 2t and 2t + 1 step t's inputs and noise. */
const streamKey = (seed: number, stream: number) => pcg(seed ^ pcg(stream));

function gauss(key: number, i: number): number {
  const h1 = pcg((i ^ key) >>> 0);
  const h2 = pcg((h1 ^ 0x9e3779b9) >>> 0);
  const u1 = ((h1 >>> 8) + 0.5) / 16777216;
  const u2 = (h2 >>> 8) / 16777216;
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

function featureScales(inputs: number): Float32Array<ArrayBuffer> {
  const lo = Math.log10(SCALE_LO);
  const hi = Math.log10(SCALE_HI);
  const s = new Float32Array(inputs);
  for (let j = 0; j < inputs; j++) {
    s[j] = 10 ** (lo + (hi - lo) * (j + 0.5) / inputs);
  }
  return s;
}

/** Teacher entries are N(0, 1/Σs²), so that E[y²] = 1 + σ² and the loss at W = 0 is ≈ 0.5. */
function teacherStd(scales: Float32Array): number {
  return 1 / Math.sqrt(scales.reduce((s, x) => s + x * x, 0));
}

// ---- GPU side ---------------------------------------------------------------

const WGSL = /* wgsl */ `
struct Problem {
  inputs: u32,
  outputs: u32,
  batch: u32,
  step: u32,      // 1-based training step (0: teacher)
  seed: u32,
  slot: u32,      // evaluation slot written by evaluate()
  sigma: f32,     // label noise
  inv: f32,       // 1 / (batch · outputs): gradient of the mean loss
  teacher_std: f32,
}

@group(0) @binding(0) var<uniform> P: Problem;
@group(0) @binding(1) var<storage, read_write> W: array<vec4<f32>>;       // parameters (outputs × inputs)
@group(0) @binding(2) var<storage, read_write> G: array<vec4<f32>>;       // gradient
@group(0) @binding(3) var<storage, read_write> WT: array<vec4<f32>>;      // teacher
@group(0) @binding(4) var<storage, read> scales: array<vec4<f32>>;        // feature scales
@group(0) @binding(5) var<storage, read_write> X: array<vec4<f32>>;       // batch × inputs
@group(0) @binding(6) var<storage, read_write> R: array<f32>;             // batch × outputs residuals
@group(0) @binding(7) var<storage, read_write> partials: array<f32>;

fn pcg(v: u32) -> u32 {
  let s = v * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}

fn stream_key(stream: u32) -> u32 { return pcg(P.seed ^ pcg(stream)); }

fn gauss(key: u32, i: u32) -> f32 {
  let h1 = pcg(i ^ key);
  let h2 = pcg(h1 ^ 0x9e3779b9u);
  let u1 = (f32(h1 >> 8u) + 0.5) / 16777216.0;
  let u2 = f32(h2 >> 8u) / 16777216.0;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307 * u2);
}

const OB: u32 = 16u; // outputs per invocation of backward()
const BB: u32 = 16u; // samples per workgroup of forward()
var<workgroup> red: array<f32, 256>;
var<workgroup> part: array<array<f32, 64>, BB>;

// The teacher W*, entries N(0, teacher_std²).
@compute @workgroup_size(256)
fn teacher(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
  let i = id.x + id.y * n.x * 256u;
  if (i >= P.inputs * P.outputs) { return; }
  WT[i >> 2u][i & 3u] = P.teacher_std * gauss(stream_key(0u), i);
}

// x_b = scales ⊙ N(0, I): this step's inputs (batch × inputs).
@compute @workgroup_size(256)
fn sample(@builtin(global_invocation_id) id: vec3<u32>) {
  let i = id.x;
  if (i >= P.batch * P.inputs) { return; }
  let j = i % P.inputs;
  X[i >> 2u][i & 3u] = scales[j >> 2u][j & 3u] * gauss(stream_key(2u * P.step), i);
}

// r_b = (W − W*) x_b − σ ε_b, i.e. W x_b − y_b, for one output and BB samples:
// 64 invocations split the inputs (contiguous vec4 loads), then sum.
@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let o = wg.x;
  let b0 = wg.y * BB;
  let n4 = P.inputs / 4u;
  var acc: array<f32, BB>;
  for (var j = t; j < n4; j += 64u) {
    let c = o * n4 + j;
    let d = W[c] - WT[c];
    for (var k = 0u; k < BB; k++) { acc[k] += dot(X[(b0 + k) * n4 + j], d); }
  }
  for (var k = 0u; k < BB; k++) { part[k][t] = acc[k]; }
  workgroupBarrier();
  if (t < BB) {
    var s = 0.0;
    for (var i = 0u; i < 64u; i++) { s += part[t][i]; }
    let i = (b0 + t) * P.outputs + o;
    R[i] = s - P.sigma * gauss(stream_key(2u * P.step + 1u), i);
  }
}

// G = Rᵀ X / (batch · outputs): each invocation owns 4 inputs and OB outputs.
@compute @workgroup_size(64)
fn backward(@builtin(global_invocation_id) id: vec3<u32>) {
  let j = id.x;
  let o0 = id.y * OB;
  let n4 = P.inputs / 4u;
  var acc: array<vec4<f32>, OB>;
  for (var b = 0u; b < P.batch; b++) {
    let x = X[b * n4 + j];
    for (var k = 0u; k < OB; k++) {
      acc[k] += R[b * P.outputs + o0 + k] * x;
    }
  }
  for (var k = 0u; k < OB; k++) {
    G[(o0 + k) * n4 + j] = acc[k] * P.inv;
  }
}

// Partial sums of Σ s_j² (W − W*)²: the population loss without sampling noise.
@compute @workgroup_size(256)
fn evaluate(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  var acc = 0.0;
  let n = P.inputs * P.outputs / 4u;
  for (var i = wg.x * 256u + t; i < n; i += 256u * ${EVAL_GROUPS}u) {
    let d = W[i] - WT[i];
    let s = scales[i % (P.inputs / 4u)];
    acc += dot(s * s, d * d);
  }
  red[t] = acc;
  workgroupBarrier();
  for (var h = 128u; h > 0u; h = h >> 1u) {
    if (t < h) { red[t] += red[t + h]; }
    workgroupBarrier();
  }
  if (t == 0u) { partials[P.slot * ${EVAL_GROUPS}u + wg.x] = red[0]; }
}
`;

const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
  GPUBufferUsage.COPY_DST;

/** The regression problem's buffers and kernels on one device. */
class GpuProblem {
  readonly param: GPUBuffer;
  readonly grad: GPUBuffer;
  readonly #device: GPUDevice;
  readonly #dims: Dims;
  readonly #seed: number;
  readonly #uniform: GPUBuffer;
  readonly #partials: GPUBuffer;
  readonly #buffers: GPUBuffer[];
  readonly #bind: GPUBindGroup;
  readonly #pipes: Record<
    "teacher" | "sample" | "forward" | "backward" | "evaluate",
    GPUComputePipeline
  >;

  constructor(device: GPUDevice, dims: Dims, seed: number, evals: number) {
    this.#device = device;
    this.#dims = dims;
    this.#seed = seed;
    const f32 = (n: number, label: string) =>
      device.createBuffer({ label, size: 4 * n, usage: USAGE });
    const scales = featureScales(dims.inputs);
    this.param = f32(dims.size, "demo W");
    this.grad = f32(dims.size, "demo grad");
    const teacher = f32(dims.size, "demo teacher");
    const scaleBuf = f32(dims.inputs, "demo scales");
    device.queue.writeBuffer(scaleBuf, 0, scales);
    const x = f32(dims.batch * dims.inputs, "demo X");
    const r = f32(dims.batch * dims.outputs, "demo residuals");
    this.#partials = f32(evals * EVAL_GROUPS, "demo loss partials");
    this.#uniform = device.createBuffer({
      label: "demo problem",
      size: 48,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    this.#buffers = [
      this.param,
      this.grad,
      teacher,
      scaleBuf,
      x,
      r,
      this.#partials,
      this.#uniform,
    ];
    const storage = (type: GPUBufferBindingType) => ({
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type },
    });
    const layout = device.createBindGroupLayout({
      entries: [
        { binding: 0, ...storage("uniform") },
        ...[1, 2, 3].map((binding) => ({ binding, ...storage("storage") })),
        { binding: 4, ...storage("read-only-storage") },
        ...[5, 6, 7].map((binding) => ({ binding, ...storage("storage") })),
      ],
    });
    this.#bind = device.createBindGroup({
      layout,
      entries: [this.#uniform, ...this.#buffers.slice(0, 7)].map((
        buffer,
        binding,
      ) => ({ binding, resource: { buffer } })),
    });
    const module = device.createShaderModule({ label: "demo", code: WGSL });
    const pipelineLayout = device.createPipelineLayout({
      bindGroupLayouts: [layout],
    });
    const make = (entryPoint: string) =>
      device.createComputePipeline({
        label: `demo ${entryPoint}`,
        layout: pipelineLayout,
        compute: { module, entryPoint },
      });
    this.#pipes = {
      teacher: make("teacher"),
      sample: make("sample"),
      forward: make("forward"),
      backward: make("backward"),
      evaluate: make("evaluate"),
    };
    this.#setUniform(0, 0);
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setBindGroup(0, this.#bind);
    pass.setPipeline(this.#pipes.teacher);
    const groups = Math.ceil(dims.size / 256);
    const x0 = Math.min(groups, 65535);
    pass.dispatchWorkgroups(x0, Math.ceil(groups / x0));
    pass.end();
    device.queue.submit([enc.finish()]);
  }

  /** Sets the per-step scalars; takes effect for the next submit. */
  #setUniform(step: number, slot: number): void {
    const d = this.#dims;
    const u = new ArrayBuffer(48);
    new Uint32Array(u, 0, 6).set([
      d.inputs,
      d.outputs,
      d.batch,
      step,
      this.#seed,
      slot,
    ]);
    new Float32Array(u, 24, 3).set([
      SIGMA,
      1 / (d.batch * d.outputs),
      teacherStd(featureScales(d.inputs)),
    ]);
    this.#device.queue.writeBuffer(this.#uniform, 0, u);
  }

  /** Zeroes W and its gradient. */
  reset(): void {
    const enc = this.#device.createCommandEncoder();
    enc.clearBuffer(this.param);
    enc.clearBuffer(this.grad);
    this.#device.queue.submit([enc.finish()]);
  }

  /** Writes step `step`'s scalars; encode that step's work and submit it next. */
  begin(step: number, slot: number): void {
    this.#setUniform(step, slot);
  }

  /** Encodes this step's data, residuals and gradient. */
  encodeGradient(enc: GPUCommandEncoder): void {
    const d = this.#dims;
    const pass = enc.beginComputePass({ label: "demo gradient" });
    pass.setBindGroup(0, this.#bind);
    pass.setPipeline(this.#pipes.sample);
    pass.dispatchWorkgroups(Math.ceil(d.batch * d.inputs / 256));
    pass.setPipeline(this.#pipes.forward);
    pass.dispatchWorkgroups(d.outputs, d.batch / 16);
    pass.setPipeline(this.#pipes.backward);
    pass.dispatchWorkgroups(d.inputs / 256, d.outputs / 16);
    pass.end();
  }

  /** Encodes the loss evaluation into the slot given to {@link begin}. */
  encodeEval(enc: GPUCommandEncoder): void {
    const pass = enc.beginComputePass({ label: "demo loss" });
    pass.setBindGroup(0, this.#bind);
    pass.setPipeline(this.#pipes.evaluate);
    pass.dispatchWorkgroups(EVAL_GROUPS);
    pass.end();
  }

  /** Reads every evaluated loss back (the one readback of a run). */
  async losses(evals: number): Promise<number[]> {
    const bytes = await readBack(
      this.#device,
      this.#partials,
      4 * evals * EVAL_GROUPS,
    );
    const p = new Float32Array(bytes);
    const out: number[] = [];
    for (let e = 0; e < evals; e++) {
      let s = 0;
      for (let g = 0; g < EVAL_GROUPS; g++) s += p[e * EVAL_GROUPS + g];
      out.push(s / (2 * this.#dims.outputs) + SIGMA * SIGMA / 2);
    }
    return out;
  }

  destroy(): void {
    for (const b of this.#buffers) b.destroy();
  }
}

async function readBack(
  device: GPUDevice,
  src: GPUBuffer,
  size: number,
): Promise<ArrayBuffer> {
  const staging = device.createBuffer({
    size,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(src, 0, staging, 0, size);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = staging.getMappedRange().slice(0);
  staging.destroy();
  return out;
}

/** Evaluation steps: 0, every `every` steps, and the last step. */
function evalSteps(steps: number, every: number): number[] {
  const out: number[] = [];
  for (let t = 0; t < steps; t += every) out.push(t);
  out.push(steps);
  return out;
}

async function runGpu(
  device: GPUDevice,
  problem: GpuProblem,
  name: OptName,
  lr: number,
  schedule: Schedule,
  steps: number,
  at: number[],
): Promise<RunResult> {
  const make = (tensors: GpuTensor[]) => {
    const options = { lr, schedule };
    return name === "microadam"
      ? new MicroAdam(device, tensors, options)
      : name === "adam"
      ? new Adam(device, tensors, options)
      : name === "adamw"
      ? new AdamW(device, tensors, options)
      : new AMSGrad(device, tensors, options);
  };
  {
    // Warm-up: one step of a throwaway optimizer of the same kind compiles
    // its kernels (drivers may compile at first dispatch) before the timing.
    const small = () => device.createBuffer({ size: 4 * 4096, usage: USAGE });
    const tiny = { param: small(), grad: small(), length: 4096 };
    using warm = make([tiny]);
    warm.step();
    await device.queue.onSubmittedWorkDone();
    tiny.param.destroy();
    tiny.grad.destroy();
  }
  using opt = make([{
    name: "W",
    param: problem.param,
    grad: problem.grad,
    length: problem.param.size / 4,
  }]);
  const timed = device.features.has("timestamp-query")
    ? Math.min(steps, 2048)
    : 0;
  const querySet = timed
    ? device.createQuerySet({ type: "timestamp", count: 2 * timed })
    : undefined;
  problem.reset();
  problem.begin(0, 0);
  const first = device.createCommandEncoder();
  problem.encodeEval(first);
  device.queue.submit([first.finish()]);
  await device.queue.onSubmittedWorkDone();

  const start = performance.now();
  let slot = 1;
  for (let t = 1; t <= steps; t++) {
    const evaluate = at[slot] === t;
    problem.begin(t, slot);
    const enc = device.createCommandEncoder();
    problem.encodeGradient(enc);
    opt.step({
      encoder: enc,
      timestampWrites: querySet && t <= timed
        ? {
          querySet,
          beginningOfPassWriteIndex: 2 * (t - 1),
          endOfPassWriteIndex: 2 * t - 1,
        }
        : undefined,
    });
    if (evaluate) {
      problem.encodeEval(enc);
      slot++;
    }
    device.queue.submit([enc.finish()]);
  }
  await device.queue.onSubmittedWorkDone();
  const wallMs = performance.now() - start;

  let optMs: number | undefined;
  if (querySet) {
    const resolved = device.createBuffer({
      size: 16 * timed,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const enc = device.createCommandEncoder();
    enc.resolveQuerySet(querySet, 0, 2 * timed, resolved, 0);
    device.queue.submit([enc.finish()]);
    const ts = new BigUint64Array(await readBack(device, resolved, 16 * timed));
    const ms: number[] = [];
    for (let i = 0; i < timed; i++) {
      ms.push(Number(ts[2 * i + 1] - ts[2 * i]) / 1e6);
    }
    ms.sort((a, b) => a - b);
    optMs = ms[Math.floor(ms.length / 2)];
    resolved.destroy();
    querySet.destroy();
  }
  const status = await opt.status();
  const memory = opt.memoryBytes();
  return {
    name,
    lr,
    losses: await problem.losses(at.length),
    stateBytes: opt.stateBytes(),
    workspaceBytes: memory.workspace,
    optMs: optMs !== undefined && optMs > 0 ? optMs : undefined,
    wallMs,
    skipped: status.skipped,
  };
}

// ---- CPU side (--cpu) -------------------------------------------------------

/** The same problem and data stream in JavaScript. */
class CpuProblem {
  readonly param: Float32Array;
  readonly grad: Float32Array;
  readonly #dims: Dims;
  readonly #seed: number;
  readonly #scales: Float32Array;
  readonly #teacher: Float32Array;
  readonly #x: Float32Array;
  readonly #r: Float32Array;

  constructor(dims: Dims, seed: number) {
    this.#dims = dims;
    this.#seed = seed;
    this.#scales = featureScales(dims.inputs);
    const std = Math.fround(teacherStd(this.#scales));
    const key = streamKey(seed, 0);
    this.#teacher = Float32Array.from(
      { length: dims.size },
      (_, i) => std * gauss(key, i),
    );
    this.param = new Float32Array(dims.size);
    this.grad = new Float32Array(dims.size);
    this.#x = new Float32Array(dims.batch * dims.inputs);
    this.#r = new Float32Array(dims.batch * dims.outputs);
  }

  reset(): void {
    this.param.fill(0);
    this.grad.fill(0);
  }

  gradient(step: number): void {
    const { inputs: n, outputs: m, batch } = this.#dims;
    const x = this.#x, r = this.#r, w = this.param, wt = this.#teacher;
    const kx = streamKey(this.#seed, 2 * step);
    const kn = streamKey(this.#seed, 2 * step + 1);
    for (let i = 0; i < batch * n; i++) {
      x[i] = this.#scales[i % n] * gauss(kx, i);
    }
    for (let b = 0; b < batch; b++) {
      for (let o = 0; o < m; o++) {
        let acc = 0;
        for (let j = 0, xb = b * n, wo = o * n; j < n; j++) {
          acc += x[xb + j] * (w[wo + j] - wt[wo + j]);
        }
        r[b * m + o] = acc - SIGMA * gauss(kn, b * m + o);
      }
    }
    const g = this.grad;
    g.fill(0);
    for (let o = 0; o < m; o++) {
      for (let b = 0; b < batch; b++) {
        const rb = r[b * m + o] / (batch * m);
        for (let j = 0, xb = b * n, go = o * n; j < n; j++) {
          g[go + j] += rb * x[xb + j];
        }
      }
    }
  }

  loss(): number {
    const n = this.#dims.inputs;
    let s = 0;
    for (let i = 0; i < this.param.length; i++) {
      const d = this.param[i] - this.#teacher[i];
      const sc = this.#scales[i % n];
      s += sc * sc * d * d;
    }
    return s / (2 * this.#dims.outputs) + SIGMA * SIGMA / 2;
  }
}

function runCpu(
  problem: CpuProblem,
  name: OptName,
  lr: number,
  schedule: Schedule,
  steps: number,
  at: number[],
): RunResult {
  problem.reset();
  const tensors: CpuTensor[] = [{
    name: "W",
    param: problem.param,
    grad: problem.grad,
  }];
  const options = { lr, schedule };
  // deno-lint-ignore no-explicit-any
  using opt: CpuOptimizer<any> = name === "microadam"
    ? new MicroAdamCpu(tensors, options)
    : name === "adam"
    ? new AdamCpu(tensors, options)
    : name === "adamw"
    ? new AdamWCpu(tensors, options)
    : new AMSGradCpu(tensors, options);
  const losses = [problem.loss()];
  const start = performance.now();
  for (let t = 1; t <= steps; t++) {
    problem.gradient(t);
    opt.step();
    if (at.includes(t)) losses.push(problem.loss());
  }
  return {
    name,
    lr,
    losses,
    stateBytes: opt.stateBytes(),
    wallMs: performance.now() - start,
    skipped: opt.status().skipped,
  };
}

// ---- Output -----------------------------------------------------------------

const int = (n: number) => n.toLocaleString("en-US");
const loss = (x: number) => x < 1e-4 ? x.toExponential(2) : x.toPrecision(3);

function table(head: string[], rows: string[][], left = 1): string {
  const w = head.map((h, i) =>
    Math.max(h.length, ...rows.map((r) => r[i].length))
  );
  const line = (r: string[]) =>
    r.map((c, i) => i < left ? c.padEnd(w[i]) : c.padStart(w[i])).join("   ");
  return [
    line(head),
    w.map((n) => "─".repeat(n)).join("───"),
    ...rows.map(line),
  ]
    .join("\n");
}

function report(results: RunResult[], at: number[], size: number): void {
  console.log("\nPopulation loss (exact, not sampled) by step:\n");
  console.log(table(
    ["step", ...at.map(String)],
    results.map((r) => [NAMES[r.name], ...r.losses.map(loss)]),
  ));
  const best = Math.min(...results.map((r) => r.losses.at(-1)!));
  console.log("\nSummary:\n");
  console.log(table(
    [
      "optimizer",
      "lr",
      "final loss",
      "reduction",
      "state bytes",
      "B/param",
      "opt ms/step",
      "wall s",
    ],
    results.map((r) => {
      const last = r.losses.at(-1)!;
      return [
        NAMES[r.name] + (last === best ? " *" : ""),
        String(r.lr),
        loss(last),
        `${(r.losses[0] / last).toFixed(1)}×`,
        int(r.stateBytes),
        (r.stateBytes / size).toFixed(3),
        r.optMs === undefined ? "—" : r.optMs.toFixed(2),
        (r.wallMs / 1000).toFixed(2),
      ];
    }),
  ));
  const skipped = results.filter((r) => r.skipped > 0);
  for (const r of skipped) {
    console.log(
      `${NAMES[r.name]}: ${r.skipped} step(s) skipped (non-finite gradient)`,
    );
  }
}

// ---- Main -------------------------------------------------------------------

const HELP = `deno task demo [options]   (= deno run -A demo.ts)

Trains y ≈ W·x (W: outputs × ${INPUTS}, fresh data each step, feature scales
${SCALE_LO}–${SCALE_HI}, label noise σ = ${SIGMA}) with MicroAdam, Adam, AdamW and
AMSGrad; gradients are computed on the GPU by the demo's own WGSL kernels.

  --size N          parameters, a multiple of ${
  16 * INPUTS
} (default: 262144 on a
                    software adapter such as llvmpipe, 4194304 on a GPU)
  --steps N         training steps (default 200)
  --batch N         samples per step, a multiple of 16 (default 64)
  --eval-every N    steps between loss evaluations (default 25)
  --lr-microadam X  (default ${TUNED_LR.microadam})
  --lr-adam X       (default ${TUNED_LR.adam})
  --lr-adamw X      (default ${TUNED_LR.adamw}; weight decay 0.01, AdamW's default)
  --lr-amsgrad X    (default ${TUNED_LR.amsgrad})
  --optimizers L    comma-separated subset of microadam,adam,adamw,amsgrad
  --seed N          data and teacher seed (default 1)
  --constant-lr     constant learning rates instead of cosine decay to 0
  --cpu             CPU optimizers and a JavaScript gradient (no WebGPU)
  --help            this text`;

function fail(message: string): never {
  console.error(`demo: ${message}`);
  Deno.exit(2);
}

function positiveInt(name: string, v: string | undefined, fallback: number) {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) {
    fail(`--${name}: expected a positive integer, got "${v}"`);
  }
  return n;
}

function positiveNumber(name: string, v: string | undefined, fallback: number) {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) {
    fail(`--${name}: expected a positive number, got "${v}"`);
  }
  return n;
}

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        size: { type: "string" },
        steps: { type: "string" },
        batch: { type: "string" },
        "eval-every": { type: "string" },
        "lr-microadam": { type: "string" },
        "lr-adam": { type: "string" },
        "lr-adamw": { type: "string" },
        "lr-amsgrad": { type: "string" },
        optimizers: { type: "string" },
        seed: { type: "string" },
        "constant-lr": { type: "boolean", default: false },
        cpu: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
    });
  } catch (e) {
    fail(`${(e as Error).message}\n\n${HELP}`);
  }
  const v = parsed.values;
  if (v.help) {
    console.log(HELP);
    return;
  }
  const steps = positiveInt("steps", v.steps, 200);
  const batch = positiveInt("batch", v.batch, 64);
  const every = positiveInt("eval-every", v["eval-every"], 25);
  const seed = positiveInt("seed", v.seed, 1) >>> 0;
  if (batch % 16) fail(`--batch: expected a multiple of 16, got ${batch}`);
  const lrs: Record<OptName, number> = {
    microadam: positiveNumber(
      "lr-microadam",
      v["lr-microadam"],
      TUNED_LR.microadam,
    ),
    adam: positiveNumber("lr-adam", v["lr-adam"], TUNED_LR.adam),
    adamw: positiveNumber("lr-adamw", v["lr-adamw"], TUNED_LR.adamw),
    amsgrad: positiveNumber("lr-amsgrad", v["lr-amsgrad"], TUNED_LR.amsgrad),
  };
  const chosen = (v.optimizers ?? "microadam,adam,adamw,amsgrad").split(",")
    .map((s) => s.trim().toLowerCase()).filter(Boolean);
  for (const c of chosen) {
    if (!(c in NAMES)) {
      fail(
        `--optimizers: unknown "${c}" (expected microadam, adam, adamw, amsgrad)`,
      );
    }
  }
  const names = chosen as OptName[];
  const at = evalSteps(steps, every);
  const schedule = v["constant-lr"] ? constant() : cosineDecay(steps);

  let device: GPUDevice | undefined;
  let adapterText = "CPU (JavaScript)";
  let defaultSize = 262144;
  if (!v.cpu) {
    device = await requestDevice();
    const info = (await navigator.gpu.requestAdapter({
      powerPreference: "high-performance",
    }))?.info;
    const software = info?.isFallbackAdapter ||
      /llvmpipe|lavapipe|swiftshader|software/i.test(info?.description ?? "");
    if (!software) defaultSize = 4194304;
    adapterText = `${info?.description || info?.vendor || "unknown adapter"}${
      software ? " (software adapter)" : ""
    }`;
  }
  const size = positiveInt("size", v.size, defaultSize);
  if (size % (16 * INPUTS)) {
    fail(`--size: expected a multiple of ${16 * INPUTS}, got ${size}`);
  }
  const dims: Dims = { inputs: INPUTS, outputs: size / INPUTS, batch, size };

  console.log(
    `MicroAdam demo: online least squares y ≈ W·x, ${
      int(size)
    } parameters (W: ${dims.outputs} × ${INPUTS}), batch ${batch}, ${steps} steps`,
  );
  console.log(
    v.cpu
      ? `device: CPU (JavaScript optimizers MicroAdamCpu, AdamCpu, AdamWCpu, AMSGradCpu; gradient in JavaScript)`
      : `device: ${adapterText} · WebGPU; gradient by the demo's WGSL kernels, no readback until the end`,
  );
  console.log(
    `loss: ½·E(W·x − y)² per output over fresh data; ${
      loss(0.5 * (1 + SIGMA * SIGMA))
    } at W = 0 (in expectation), floor σ²/2 = ${loss(SIGMA * SIGMA / 2)}`,
  );

  const results: RunResult[] = [];
  if (device) {
    const problem = new GpuProblem(device, dims, seed, at.length);
    // Warm-up: compile the demo's kernels before any timing.
    problem.begin(1, 0);
    const enc = device.createCommandEncoder();
    problem.encodeGradient(enc);
    problem.encodeEval(enc);
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
    for (const name of names) {
      const r = await runGpu(
        device,
        problem,
        name,
        lrs[name],
        schedule,
        steps,
        at,
      );
      results.push(r);
      console.log(
        `  ${NAMES[name].padEnd(9)} done in ${(r.wallMs / 1000).toFixed(1)} s`,
      );
    }
    problem.destroy();
    device.destroy();
  } else {
    const problem = new CpuProblem(dims, seed);
    for (const name of names) {
      const r = runCpu(problem, name, lrs[name], schedule, steps, at);
      results.push(r);
      console.log(
        `  ${NAMES[name].padEnd(9)} done in ${(r.wallMs / 1000).toFixed(1)} s`,
      );
    }
  }
  report(results, at, size);
  const notes = [
    "* lowest final loss.",
    `lr: tuned per optimizer by a sweep on this problem (TUNED_LR in demo.ts); ${
      v["constant-lr"] ? "constant" : "cosine decay to 0 over the run"
    }.`,
    "state bytes: opt.stateBytes(), the optimizer state alone; scratch, tables and scalars (opt.memoryBytes().workspace) are extra.",
    v.cpu
      ? "wall s: every step, gradient (JavaScript) and optimizer."
      : "opt ms/step: median GPU time of the optimizer's compute pass (timestamp queries). wall s: every step, gradient and loss kernels included.",
  ];
  const micro = results.find((r) => r.name === "microadam");
  const adam = results.find((r) => r.name === "adam");
  if (micro && adam) {
    notes.push(
      `MicroAdam keeps ${
        (adam.stateBytes / micro.stateBytes).toFixed(1)
      }× less state than Adam and ended at ${
        (micro.losses.at(-1)! / adam.losses.at(-1)!).toFixed(1)
      }× Adam's final loss: it rebuilds the moments from its window of the last 10 top-1 % gradients, so at most ~10 % of the coordinates move in one step.`,
    );
  }
  console.log(`\n${notes.join("\n")}`);
}

try {
  await main();
} catch (e) {
  if (e instanceof GpuUnavailableError) {
    console.error(`demo: ${e.message}`);
    console.error("demo: the CPU optimizers need no GPU: deno task demo --cpu");
    Deno.exit(1);
  }
  throw e;
}
