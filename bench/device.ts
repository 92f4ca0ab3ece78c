/**
 * Every GPU-machine measurement in one command: correctness on this device
 * (the authors' golden trajectories bit for bit, GPU against the CPU
 * reference on both MicroAdam paths), the copy bandwidth, then the time of
 * one optimizer step for every optimizer on one tensor of each size and on
 * the LLaMA-2 7B and 13B tensor shapes, next to PyTorch's fused AdamW (and
 * fused AMSGrad, for the AMSGrad rows) and TensorFlow.js's Adam on the same
 * GPU; last, the optimizer's share of a training step (the README's MLP on
 * Fashion-MNIST-shaped data). Ends with one table.
 *
 *   deno run -A bench/device.ts [--sizes 24,26,28] [--llama 7b,13b] [--layout own,shared] [--steps 50]
 *       [--per-submit 1] [--repeat 1] [--warmup-ms 300] [--heat-ms 1500] [--optimizers all] [--skip-torch] [--skip-tfjs] [--tfjs-sizes 20,24,26,28]
 *       [--skip-training] [--profile-all] [--residency] [--registers DIR] [--memory-probe 1024,500,172,64]
 *       [--microadam-wd 0] [--impl ../mod.ts --label new] [--out DIR]
 *
 * How a step is timed (bench/RESULTS.md): N ≥ 50 steps are submitted back to
 * back; the time per step is the GPU span from the first step's begin
 * timestamp to the last step's end timestamp, over N. Host time to the end
 * of the last step, over N, and the median of the per-step timestamp
 * intervals are printed beside it as diagnostics (the median can overstate:
 * a pass's begin can be stamped before the previous one has drained). Two
 * more diagnostics come from a second run of the same N steps without
 * timestamps of their own: its GPU span between two empty marker passes
 * ("marked span", what PyTorch's two CUDA events measure; wgpu resets a
 * pass's queries before each timestamped pass) and the host time to encode
 * and submit its steps ("submit": when it is close to the span, the host,
 * not the GPU, sets the pace).
 * Tensors that would fit the L2 cache rotate between 4 optimizers on 4
 * parameter/gradient sets. Every configuration is warmed up with at least
 * 300 ms of its own steps (`--warmup-ms`), then a copy kernel keeps the GPU
 * busy for 1.5 s (`--heat-ms`, see heatClock) and the timing starts right
 * after. Data are made on the GPU (bench/fill.wgsl): nonzero
 * parameters, gradients spread over 12 octaves.
 *
 * `--optimizers` takes a comma-separated list of MicroAdam f32, MicroAdam
 * bf16, Adam, AdamW, AdamW unchecked, AdamW foundInf and AMSGrad ("all", the
 * default, is every one). "AdamW unchecked" is AdamW with `nonFinite:
 * "unchecked"`: no check_finite pass (28 B/param, like PyTorch's fused AdamW
 * without a GradScaler). "AdamW foundInf" is AdamW stepped with a caller's
 * found-inf flag (`step({ foundInf })`, a clear one), which replaces the
 * check_finite pass by a 4-byte copy, as PyTorch's fused AdamW takes a
 * GradScaler's `found_inf` (28 B/param). Their "vs torch" column, like every
 * row's but AMSGrad's, is against torch's fused AdamW at the row's dtype
 * (fp32 here). AMSGrad keeps one more state tensor, so its "vs torch" is
 * against torch's fused AMSGrad in fp32
 * (`torch.optim.Adam(amsgrad=True, fused=True)`, L2 weight decay 0
 * as our AMSGrad's default; 36 B/param: g 4, p 8, m 8, v 8, max_v 8), timed
 * by bench/torch_adamw.py as its fused AdamW, on the sizes and LLaMA shapes
 * our AMSGrad runs (not 13B), and only when AMSGrad is among `--optimizers`.
 *
 * `--memory-probe` measures how much memory this process can hold in storage
 * buffers of each given size (MiB), after the timings (run first, it slowed
 * the host-paced rows that followed): it creates them until the device
 * refuses one, prints the total, and frees them before the next size. A
 * total that depends on the size is the allocator's granularity, not the
 * device's memory.
 *
 * `--microadam-wd` is the MicroAdam rows' weight decay (default 0, the
 * library's default; PyTorch's AdamW rows and ours run 0.01). With weight
 * decay every parameter word is read and written each step (the update
 * kernel decays the words its window does not touch while it sorts the
 * window); without it only the coordinates the window touches:
 * bench/RESULTS.md, rounds 30 and 31, measure both.
 *
 * `--impl` times another build of the library (its `mod.ts`), e.g. the main
 * branch's checkout, with the same method.
 *
 * TensorFlow.js's Adam runs at `--tfjs-sizes` (bench/tfjs_adam.ts, from the
 * carried npm cache); where `--sizes` leaves one of those out (2^20 by
 * default), our AdamW is timed there too, alone, so that every TF.js row has
 * its ratio to our AdamW.
 *
 * `--registers DIR` adds the Vulkan driver's report of what it compiled the
 * kernels to (registers and local memory per thread, workgroup memory):
 * `bench/vkstats.py` on the SPIR-V that `bench/spirv.ts` wrote to DIR on a
 * machine with network access (it needs naga from npm), carried along.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type * as Lib from "../mod.ts";
import type { GpuOptimizer } from "../extend.ts";
import { dispatchSize } from "../src/gpu/kernels.ts";
import { bindBuffers, readBuffer } from "../src/gpu/buffers.ts";
import { goldenOptions, loadGoldenCases, splitStep } from "../tests/golden.ts";
import { dispatchWith } from "../tests/gpu_util.ts";
import { defaultConfig } from "../src/train/config.ts";
import { OPTIMIZER_NAMES } from "../src/train/optimizer.ts";
import { Trainer } from "../src/train/trainer.ts";
import { TUNED_LR } from "../src/train/tuned.ts";
import { syntheticImageData } from "../src/data/synthetic.ts";
import fillWgsl from "./fill.wgsl" with { type: "text" };
import { copyKernel, pressureKernel, residency } from "./residency.ts";

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "24,26,28" },
    llama: { type: "string", default: "7b,13b" },
    // How the LLaMA shapes' tensors lie: "own" (each in a parameter and a
    // gradient buffer of its own, one batch per tensor) and/or "shared"
    // (packed into as few buffers as the binding limit allows, as a model
    // allocated in one arena would be: the optimizer batches them as they lie).
    layout: { type: "string", default: "own" },
    steps: { type: "string", default: "50" },
    // Steps encoded into one command encoder per submit (at most 64).
    "per-submit": { type: "string", default: "1" },
    // Times each row this many times (a diagnostic: the row keeps the last;
    // every repeat is printed).
    repeat: { type: "string", default: "1" },
    // Warm-up before each row's timing, in ms of the row's own steps, then
    // ms of a copy kernel that keeps the GPU busy (see heatClock). PyTorch
    // and TF.js warm up with their own steps for the sum of the two.
    "warmup-ms": { type: "string", default: "300" },
    "heat-ms": { type: "string", default: "1500" },
    optimizers: { type: "string", default: "all" },
    "skip-torch": { type: "boolean", default: false },
    "skip-tfjs": { type: "boolean", default: false },
    "skip-checks": { type: "boolean", default: false },
    "skip-training": { type: "boolean", default: false },
    // Per-kernel times for every one-tensor row, not only MicroAdam's largest.
    "profile-all": { type: "boolean", default: false },
    // Resident workgroups per kernel and copy-kernel variants (bench/residency.ts).
    residency: { type: "boolean", default: false },
    // A folder of SPIR-V from bench/spirv.ts: the driver's report (bench/vkstats.py).
    registers: { type: "string" },
    // Buffer sizes in MiB for the memory probe (none by default).
    "memory-probe": { type: "string", default: "" },
    "tfjs-sizes": { type: "string", default: "20,24,26,28" },
    "microadam-wd": { type: "string", default: "0" },
    impl: { type: "string", default: "../mod.ts" },
    label: { type: "string", default: "this project" },
    out: { type: "string" },
  },
});
const steps = Number(values.steps);
const perSubmit = Number(values["per-submit"]);
const repeat = Number(values.repeat);
const warmupMs = Number(values["warmup-ms"]);
const heatMs = Number(values["heat-ms"]);
const microadamWd = Number(values["microadam-wd"]);
if (!(microadamWd >= 0)) {
  throw new RangeError(
    `--microadam-wd: expected a weight decay >= 0, got "${
      values["microadam-wd"]
    }"`,
  );
}
const sizes = values.sizes ? values.sizes.split(",").map(Number) : [];
const tfjsSizes = values["tfjs-sizes"]
  ? values["tfjs-sizes"].split(",").map(Number)
  : [];
const llamaNames = values.llama ? values.llama.split(",") : [];
const probeSizes = values["memory-probe"]
  ? values["memory-probe"].split(",").map(Number)
  : [];
if (!probeSizes.every((mib) => mib > 0)) {
  throw new RangeError(
    `--memory-probe: expected buffer sizes in MiB, got "${
      values["memory-probe"]
    }"`,
  );
}
const layouts = values.layout!.split(",");
for (const l of layouts) {
  if (l !== "own" && l !== "shared") {
    throw new Error(`--layout: expected "own" and/or "shared", got "${l}"`);
  }
}
const lib = (await import(
  new URL(values.impl!, import.meta.url).href
)) as typeof Lib;
// The same build's extension entry point (its capability probes).
const ext = (await import(
  new URL(values.impl!.replace(/mod\.ts$/, "extend.ts"), import.meta.url).href
)) as {
  hasExactFma(d: GPUDevice): boolean;
  hasSubgroups?(d: GPUDevice): boolean;
};
const here = new URL(".", import.meta.url).pathname;
const log: string[] = [];
const say = (line: string) => {
  console.log(line);
  log.push(line);
};

const device = await lib.requestDevice();
const adapter = await navigator.gpu.requestAdapter({
  powerPreference: "high-performance",
});
say(
  `device: ${
    adapter?.info.description || adapter?.info.vendor
  } (${adapter?.info.architecture})`,
);
say(
  `date: ${
    new Date().toISOString()
  }; library: ${values.impl} (${values.label}); Deno ${Deno.version.deno}`,
);
say(
  `fma() exact on this device: ${ext.hasExactFma(device)}; subgroups used: ${
    ext.hasSubgroups?.(device) ?? "n/a"
  }; features: ${[...device.features].join(", ")}`,
);
const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
  GPUBufferUsage.COPY_DST;

// ---- Shapes -------------------------------------------------------------------

/** LLaMA-2 tensor shapes: embedding, per layer q k v o gate up down + 2 norms, final norm, head. */
function llama(hidden: number, inter: number, layers: number): number[][] {
  const out: number[][] = [[32000, hidden]];
  for (let l = 0; l < layers; l++) {
    out.push([hidden, hidden], [hidden, hidden], [hidden, hidden], [
      hidden,
      hidden,
    ]);
    out.push([inter, hidden], [inter, hidden], [hidden, inter]);
    out.push([hidden], [hidden]);
  }
  out.push([hidden], [32000, hidden]);
  return out;
}
const LLAMA: Record<string, number[][]> = {
  "7b": llama(4096, 11008, 32),
  "13b": llama(5120, 13824, 40),
};
for (const name of llamaNames) {
  if (!(name in LLAMA)) {
    throw new RangeError(
      `--llama: expected names from ${
        Object.keys(LLAMA).join(", ")
      } (or "" for none), got "${name}"`,
    );
  }
}
const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);

// ---- Data on the GPU ---------------------------------------------------------

const fillPipe = device.createComputePipeline({
  layout: "auto",
  compute: {
    module: device.createShaderModule({ code: fillWgsl }),
    entryPoint: "main",
  },
});
function fill(
  buffer: GPUBuffer,
  words: number,
  seed: number,
  kind: 0 | 1,
  bf16: boolean,
): void {
  const u = device.createBuffer({
    size: 32,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(
    u,
    0,
    new Uint32Array([words, seed, kind, bf16 ? 1 : 0, 12, 0, 0, 0]),
  );
  const [x, y] = dispatchSize(
    Math.ceil(words / 256),
    device.limits.maxComputeWorkgroupsPerDimension,
  );
  dispatchWith(device, fillPipe, [buffer, u], x, y);
  u.destroy();
}

/**
 * `shapes` packed into shared parameter and gradient buffers by the
 * library's `createTensors` (a new pair whenever the next tensor would pass
 * the binding limit), filled as the other rows' buffers are; the buffers go
 * to `buffers`.
 */
function sharedTensors(
  shapes: number[][],
  bf16: boolean,
  seed: number,
  buffers: GPUBuffer[],
): Lib.GpuTensor[] {
  if (!lib.createTensors) {
    throw new Error(`--layout shared: ${values.impl} has no createTensors`);
  }
  const tensors = lib.createTensors(device, shapes.map(numel), {
    dtype: bf16 ? "bf16" : "f32",
  });
  const pairs = [...new Set(tensors.map((t) => t.param))].map((param) => ({
    param,
    grad: tensors.find((t) => t.param === param)!.grad,
  }));
  pairs.forEach(({ param, grad }, c) => {
    buffers.push(param, grad);
    fill(param, param.size / 4, seed + 2 * c, 0, bf16);
    fill(grad, grad.size / 4, seed + 2 * c + 1, 1, bf16);
  });
  return tensors.map((t, i) => ({ ...t, name: `t${i}` }));
}

// ---- Correctness on this device -------------------------------------------------

interface Check {
  name: string;
  result: string;
  ok: boolean;
}
const checks: Check[] = [];

async function goldenChecks(): Promise<void> {
  for (const c of await loadGoldenCases()) {
    const tensors = splitStep(c.params0, 0, c.sizes).map((p, i) => {
      const words = Math.ceil(p.length / 2);
      const param = device.createBuffer({ size: 4 * words, usage });
      const padded = new Uint16Array(2 * words);
      padded.set(p);
      device.queue.writeBuffer(param, 0, padded);
      const grad = device.createBuffer({ size: 4 * words, usage });
      return { param, grad, length: p.length, name: `t${i}` };
    });
    const opt = new lib.MicroAdam(device, tensors, goldenOptions(c));
    let exact = 0, total = 0;
    for (let s = 0; s < c.config.steps; s++) {
      splitStep(c.grads, s, c.sizes).forEach((g, i) => {
        const padded = new Uint16Array(Math.ceil(g.length / 2) * 2);
        padded.set(g);
        device.queue.writeBuffer(tensors[i].grad, 0, padded);
      });
      opt.step();
      const want = splitStep(c.params, s, c.sizes);
      for (let i = 0; i < tensors.length; i++) {
        const got = new Uint16Array(await readBuffer(device, tensors[i].param));
        for (let j = 0; j < c.sizes[i]; j++) {
          total++;
          if (got[j] === want[i][j]) exact++;
        }
      }
    }
    opt.dispose();
    for (const t of tensors) {
      t.param.destroy();
      t.grad.destroy();
    }
    checks.push({
      name:
        `golden ${c.name} (authors' CUDA trajectory, ${c.config.steps} steps), GPU bf16`,
      result: `${(100 * exact / total).toFixed(4)} % of parameters bit-exact`,
      ok: exact === total,
    });
  }
}

/** GPU against MicroAdamCpu: state bytes and parameters after 20 steps. */
async function cpuCheck(
  dtype: "f32" | "bf16",
  options: Record<string, number>,
  label: string,
): Promise<void> {
  const sizes = [1, 7, 1000, 4097, 70001];
  let x = 1234;
  const rand = () =>
    ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32) - 0.5;
  const bf = dtype === "bf16";
  const make = (n: number) =>
    bf
      ? lib.toBf16Array(new Float32Array(n).map(rand))
      : new Float32Array(n).map(rand);
  const p0 = sizes.map(make);
  const gpu = p0.map((p, i) => {
    const bytes = Math.ceil(p.byteLength / 4) * 4;
    const param = device.createBuffer({ size: bytes, usage });
    const padded = new Uint8Array(bytes);
    padded.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength));
    device.queue.writeBuffer(param, 0, padded);
    const grad = device.createBuffer({ size: bytes, usage });
    return { param, grad, length: p.length, name: `t${i}` };
  });
  const cpu = p0.map((p, i) => ({
    param: p.slice(),
    grad: make(p.length),
    name: `t${i}`,
  }));
  const o = { lr: 1e-3, weightDecay: 0.01, dtype, ...options };
  const g = new lib.MicroAdam(device, gpu, o);
  const c = new lib.MicroAdamCpu(cpu, o);
  for (let s = 0; s < 20; s++) {
    cpu.forEach((t, i) => {
      t.grad.set(make(t.grad.length));
      const bytes = Math.ceil(t.grad.byteLength / 4) * 4;
      const padded = new Uint8Array(bytes);
      padded.set(
        new Uint8Array(t.grad.buffer, t.grad.byteOffset, t.grad.byteLength),
      );
      device.queue.writeBuffer(gpu[i].grad, 0, padded);
    });
    g.step();
    c.step();
  }
  const gs = await g.stateDict();
  const cs = c.stateDict();
  let stateDiff = 0, num = 0, den = 0, same = 0, n = 0;
  for (let i = 0; i < sizes.length; i++) {
    for (const k of ["window", "codes", "stats"]) {
      const a = gs.tensors[i].buffers[k], b = cs.tensors[i].buffers[k];
      for (let j = 0; j < a.length; j++) if (a[j] !== b[j]) stateDiff++;
    }
    const raw = await readBuffer(device, gpu[i].param);
    if (bf) {
      const got = new Uint16Array(raw);
      const want = cpu[i].param as Uint16Array;
      for (let j = 0; j < sizes[i]; j++, n++) if (got[j] === want[j]) same++;
    } else {
      const got = new Float32Array(raw);
      const want = cpu[i].param as Float32Array;
      for (let j = 0; j < sizes[i]; j++, n++) {
        num += (got[j] - want[j]) ** 2;
        den += want[j] ** 2;
        if (got[j] === want[j]) same++;
      }
    }
  }
  g.dispose();
  for (const t of gpu) {
    t.param.destroy();
    t.grad.destroy();
  }
  checks.push({
    name: `${dtype} GPU vs MicroAdamCpu, 20 steps, sizes ${
      sizes.join("/")
    }, ${label}`,
    result: `state bytes differing: ${stateDiff}; params bit-identical ${
      (100 * same / n).toFixed(3)
    } %${
      bf ? "" : `, relative error ${Math.sqrt(num / den).toExponential(2)}`
    }`,
    ok: stateDiff === 0 &&
      (bf ? same / n >= 0.999 : Math.sqrt(num / den) < 1e-5),
  });
}

// ---- Copy bandwidth (WGSL) ----------------------------------------------------------

// The grid of copyKernel(itemsPerThread) over n f32 (256 threads, vec4s).
function copyGrid(n: number, itemsPerThread: number): [number, number] {
  return dispatchSize(
    Math.ceil(n / 4 / 256 / itemsPerThread),
    device.limits.maxComputeWorkgroupsPerDimension,
  );
}

async function wgslCopy(
  n: number,
  code = copyKernel(4, true),
  itemsPerThread = 4,
): Promise<{ ms: number; tbps: number }> {
  const pipe = device.createComputePipeline({
    layout: "auto",
    compute: {
      module: device.createShaderModule({ code }),
      entryPoint: "main",
    },
  });
  const a = device.createBuffer({ size: 4 * n, usage });
  const b = device.createBuffer({ size: 4 * n, usage });
  fill(a, n, 7, 0, false);
  const bind = bindBuffers(device, pipe.getBindGroupLayout(0), [a, b]);
  const reps = 20;
  const qs = device.createQuerySet({ type: "timestamp", count: 2 });
  const enc = device.createCommandEncoder();
  const [x, y] = copyGrid(n, itemsPerThread);
  for (let r = 0; r < reps + 3; r++) {
    const pass = enc.beginComputePass(
      r === 3
        ? { timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0 } }
        : r === reps + 2
        ? { timestampWrites: { querySet: qs, endOfPassWriteIndex: 1 } }
        : {},
    );
    pass.setPipeline(pipe);
    pass.setBindGroup(0, bind);
    pass.dispatchWorkgroups(x, y);
    pass.end();
  }
  const res = device.createBuffer({
    size: 16,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  enc.resolveQuerySet(qs, 0, 2, res, 0);
  device.queue.submit([enc.finish()]);
  const t = new BigUint64Array(await readBuffer(device, res));
  const ms = Number(t[1] - t[0]) / 1e6 / reps;
  for (const x of [a, b, res]) x.destroy();
  qs.destroy();
  return { ms, tbps: 8 * n / ms / 1e9 };
}
// The H200's driver lowers the SM clock (to 0.35-1.4 GHz) while the GPU
// waits on the host, as it does between small steps submitted one by one,
// and needs 1-2 s of load to bring it back to 1.98 GHz. Timed at whatever
// clock the previous row left, MicroAdam f32 at 2^28 took 3.57 instead of
// 2.58 ms after the 2^26 rows, and with 2.5 s of their own steps as warm-up
// the 2^24 rows took 2-2.5 times as long (bench/RESULTS.md, round 9). So
// before each row's timed steps a copy kernel keeps the GPU busy for `ms`:
// the rows are timed at the clock a GPU busy with training runs at, as
// PyTorch's steps (which keep the GPU busy themselves) are.
const heatN = 2 ** 24;
// Built on first use (not at all with --heat-ms 0).
let heater: { bind: GPUBindGroup; pipe: GPUComputePipeline } | undefined;
async function heatClock(ms: number): Promise<void> {
  if (ms <= 0) return;
  if (!heater) {
    const pipe = device.createComputePipeline({
      layout: "auto",
      compute: {
        module: device.createShaderModule({ code: copyKernel(4, true) }),
        entryPoint: "main",
      },
    });
    const buffers = [0, 1].map(() =>
      device.createBuffer({ size: 4 * heatN, usage })
    );
    heater = {
      pipe,
      bind: bindBuffers(device, pipe.getBindGroupLayout(0), buffers),
    };
  }
  const [x, y] = copyGrid(heatN, 4);
  const start = performance.now();
  while (performance.now() - start < ms) {
    // Two submits of 500 copies (about 15 ms each at full clock) before
    // each wait, so the GPU stays busy across Deno's polling interval.
    for (let s = 0; s < 2; s++) {
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(heater.pipe);
      pass.setBindGroup(0, heater.bind);
      for (let r = 0; r < 500; r++) pass.dispatchWorkgroups(x, y);
      pass.end();
      device.queue.submit([enc.finish()]);
    }
    await device.queue.onSubmittedWorkDone();
  }
}

const copyLog2 = Math.min(
  28,
  Math.floor(Math.log2(device.limits.maxStorageBufferBindingSize / 4)),
);
// The first run warms the GPU up; the second counts.
await wgslCopy(2 ** copyLog2);
const copy = await wgslCopy(2 ** copyLog2);
say(
  `copy (WGSL vec4 kernel, 2^${copyLog2} f32, bytes read + written): ${
    copy.tbps.toFixed(2)
  } TB/s`,
);

// ---- Timing -----------------------------------------------------------------------------

interface Row {
  impl: string;
  optimizer: string;
  dtype: string;
  shape: string;
  params: number;
  /** GPU span / N. */
  ms?: number;
  /** Host time to the last step's end / N. */
  hostMs?: number;
  /** Median per-step timestamp interval (diagnostic). */
  medianMs?: number;
  /**
   * GPU span / N of the same steps without per-step timestamps, between two
   * empty marker passes (what PyTorch's CUDA events see).
   */
  markedMs?: number;
  /** Host time to encode and submit the marked run's steps / N (diagnostic). */
  submitMs?: number;
  bytesPerParam: number;
  note?: string;
  kernels?: Record<string, number>;
}
const rows: Row[] = [];

// "AdamW unchecked" is AdamW with nonFinite: "unchecked": no check_finite
// pass, as PyTorch's fused AdamW without a GradScaler. "AdamW foundInf" is
// AdamW given a (clear) found-inf flag at every step, as PyTorch's fused
// AdamW with a GradScaler: a 4-byte copy instead of the check_finite pass.
type Kind =
  | "MicroAdam f32"
  | "MicroAdam bf16"
  | "Adam"
  | "AdamW"
  | "AdamW unchecked"
  | "AdamW foundInf"
  | "AMSGrad";
const KINDS: Kind[] = [
  "MicroAdam f32",
  "MicroAdam bf16",
  "Adam",
  "AdamW",
  "AdamW unchecked",
  "AdamW foundInf",
  "AMSGrad",
];
const wanted = values.optimizers === "all"
  ? KINDS
  : KINDS.filter((k) => values.optimizers!.split(",").includes(k));

/** Bytes one step of this library moves per parameter (dense parameter traffic). */
function bytesPerParam(kind: Kind): number {
  if (kind.startsWith("MicroAdam")) {
    const k = Math.ceil(4096 * 0.01);
    // window, staged row in/out, row commit; the select kernel's selection
    // hint (one word per block read and written)
    const rows = 4 * 10 * k / 4096 + 3 * 4 * k / 4096 + 8 / 4096;
    return kind === "MicroAdam f32" ? 4 + 1 + 8 + rows : 2 + 1 + 4 + rows;
  }
  // The non-finite check's read (none when unchecked or flagged), then g,
  // p, m, v (and AMSGrad's maximum): 28 B then, as PyTorch's fused AdamW.
  const check = kind === "AdamW unchecked" || kind === "AdamW foundInf" ? 0 : 4;
  return check + 4 + 8 + 16 + (kind === "AMSGrad" ? 8 : 0);
}

/** What a LLaMA row label adds for the shared layout. */
const SHARED_SUFFIX = ", shared buffers";

/**
 * The row label of LLaMA shapes `name`; torch's rows carry the label without
 * the shared layout's suffix, which is how a row finds its torch baseline.
 */
function llamaLabel(name: string, shared = false): string {
  return `LLaMA-2-${name.toUpperCase()} (${LLAMA[name].length} tensors${
    shared ? SHARED_SUFFIX : ""
  })`;
}

/** The optimizers timed on LLaMA shapes `name` (13B: MicroAdam and AdamW only). */
function llamaKinds(name: string): Kind[] {
  return name === "13b"
    ? wanted.filter((k) => k.startsWith("MicroAdam") || k === "AdamW")
    : wanted;
}

let flag: GPUBuffer | undefined;

/** A found-inf flag that stays clear (0), for "AdamW foundInf". */
function clearFlag(): GPUBuffer {
  return flag ??= device.createBuffer({
    label: "found-inf flag",
    size: 4,
    usage: GPUBufferUsage.COPY_SRC,
  });
}

function make(kind: Kind, tensors: Lib.GpuTensor[]): GpuOptimizer {
  switch (kind) {
    case "MicroAdam f32":
      return new lib.MicroAdam(device, tensors, {
        lr: 1e-4,
        weightDecay: microadamWd,
      });
    case "MicroAdam bf16":
      return new lib.MicroAdam(device, tensors, {
        lr: 1e-4,
        dtype: "bf16",
        weightDecay: microadamWd,
      });
    case "Adam":
      return new lib.Adam(device, tensors, { lr: 1e-4 });
    case "AdamW":
      return new lib.AdamW(device, tensors, { lr: 1e-4 });
    case "AdamW unchecked":
      return new lib.AdamW(device, tensors, {
        lr: 1e-4,
        nonFinite: "unchecked",
      });
    case "AdamW foundInf": {
      // Every step() of this optimizer (warm-up, timed, profiled) gets the
      // flag: its own method, wrapped.
      const opt = new lib.AdamW(device, tensors, { lr: 1e-4 });
      const step = opt.step.bind(opt);
      opt.step = (options = {}) => step({ ...options, foundInf: clearFlag() });
      return opt;
    }
    case "AMSGrad":
      return new lib.AMSGrad(device, tensors, { lr: 1e-4 });
  }
}

/**
 * Encodes and submits N steps round-robin over `opts`, `perSubmit` to a
 * command encoder; `timestamps(i)` gives step i's pass timestamps, if any.
 */
function submitSteps(
  opts: GpuOptimizer[],
  timestamps?: (i: number) => GPUComputePassTimestampWrites,
): void {
  let batch: GPUCommandEncoder | undefined;
  for (let i = 0; i < steps; i++) {
    if (perSubmit > 1) batch ??= device.createCommandEncoder();
    opts[i % opts.length].step({
      encoder: batch,
      timestampWrites: timestamps?.(i),
    });
    if (batch && ((i + 1) % perSubmit === 0 || i + 1 === steps)) {
      device.queue.submit([batch.finish()]);
      batch = undefined;
    }
  }
}

/** The first `count` timestamps of `qs` (ns), read back; destroys `qs`. */
async function readTimestamps(
  qs: GPUQuerySet,
  count: number,
): Promise<BigUint64Array> {
  const res = device.createBuffer({
    size: 8 * count,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const enc = device.createCommandEncoder();
  enc.resolveQuerySet(qs, 0, count, res, 0);
  device.queue.submit([enc.finish()]);
  const t = new BigUint64Array(await readBuffer(device, res));
  res.destroy();
  qs.destroy();
  return t;
}

/** Times N steps round-robin over `opts`; see the module doc. */
async function timeSteps(
  opts: GpuOptimizer[],
): Promise<
  {
    ms: number;
    hostMs: number;
    medianMs: number;
    markedMs: number;
    submitMs: number;
  }
> {
  // Warm-up: at least 3 steps per optimizer and `warmupMs` of steps, then
  // the clock brought up (heatClock).
  const warm = performance.now();
  do {
    for (let i = 0; i < 3 * opts.length; i++) opts[i % opts.length].step();
    await device.queue.onSubmittedWorkDone();
  } while (performance.now() - warm < warmupMs);
  await heatClock(heatMs);
  const qs = device.createQuerySet({ type: "timestamp", count: 2 * steps });
  const t0 = performance.now();
  submitSteps(opts, (i) => ({
    querySet: qs,
    beginningOfPassWriteIndex: 2 * i,
    endOfPassWriteIndex: 2 * i + 1,
  }));
  await device.queue.onSubmittedWorkDone();
  const hostMs = (performance.now() - t0) / steps;
  const t = await readTimestamps(qs, 2 * steps);
  const per: number[] = [];
  for (let i = 0; i < steps; i++) {
    per.push(Number(t[2 * i + 1] - t[2 * i]) / 1e6);
  }
  per.sort((a, b) => a - b);
  return {
    ms: Number(t[2 * steps - 1] - t[0]) / 1e6 / steps,
    hostMs,
    medianMs: per[Math.floor(steps / 2)],
    ...await markedSpan(opts),
  };
}

/**
 * GPU span / N of N steps with no timestamps of their own: from the end of
 * an empty pass submitted before them to the end of one submitted after
 * them. Each timestamped pass makes wgpu reset its queries before the pass;
 * this run has two such passes in all, as PyTorch has two CUDA events.
 */
async function markedSpan(
  opts: GpuOptimizer[],
): Promise<{ markedMs: number; submitMs: number }> {
  const qs = device.createQuerySet({ type: "timestamp", count: 2 });
  const mark = (index: number) => {
    const enc = device.createCommandEncoder();
    enc.beginComputePass({
      timestampWrites: { querySet: qs, endOfPassWriteIndex: index },
    }).end();
    device.queue.submit([enc.finish()]);
  };
  await device.queue.onSubmittedWorkDone();
  mark(0);
  const t0 = performance.now();
  submitSteps(opts);
  const submitMs = (performance.now() - t0) / steps;
  mark(1);
  const t = await readTimestamps(qs, 2);
  return { markedMs: Number(t[1] - t[0]) / 1e6 / steps, submitMs };
}

/** Median time of each kernel over 20 profiled steps (each dispatch in a pass of its own). */
async function profile(opt: GpuOptimizer): Promise<Record<string, number>> {
  const n = 20;
  const qs = device.createQuerySet({ type: "timestamp", count: 4096 });
  const labels: string[] = [];
  const perStep: number[] = [];
  for (let i = 0; i < n; i++) {
    perStep.push(labels.length);
    const enc = device.createCommandEncoder();
    opt.step({ encoder: enc, profile: { querySet: qs, labels } });
    device.queue.submit([enc.finish()]);
    if (2 * labels.length > 4096 - 200) break;
  }
  const t = await readTimestamps(qs, 2 * labels.length);
  perStep.push(labels.length);
  const sums = new Map<string, number[]>();
  for (let s = 0; s + 1 < perStep.length; s++) {
    const step = new Map<string, number>();
    for (let i = perStep[s]; i < perStep[s + 1]; i++) {
      step.set(
        labels[i],
        (step.get(labels[i]) ?? 0) + Number(t[2 * i + 1] - t[2 * i]) / 1e6,
      );
    }
    for (const [k, v] of step) sums.set(k, [...(sums.get(k) ?? []), v]);
  }
  return Object.fromEntries(
    [...sums].map((
      [k, v],
    ) => [k, v.sort((a, b) => a - b)[Math.floor(v.length / 2)]]),
  );
}

/** Allocates, fills, times and frees one configuration. */
async function bench(
  kind: Kind,
  shape: string,
  shapes: number[][],
  sets: number,
  withProfile: boolean,
  shared = false,
): Promise<void> {
  const bf16 = kind === "MicroAdam bf16";
  const bpe = bf16 ? 2 : 4;
  const params = shapes.reduce((s, x) => s + numel(x), 0);
  const row: Row = {
    impl: values.label!,
    optimizer: kind,
    dtype: bf16 ? "bf16" : "f32",
    shape,
    params,
    bytesPerParam: bytesPerParam(kind),
  };
  const buffers: GPUBuffer[] = [];
  const opts: GpuOptimizer[] = [];
  device.pushErrorScope("out-of-memory");
  device.pushErrorScope("validation");
  try {
    for (let s = 0; s < sets; s++) {
      const tensors = shared
        ? sharedTensors(shapes, bf16, 1000 * s, buffers)
        : shapes.map((x, i) => {
          const n = numel(x);
          const words = Math.ceil(n * bpe / 4);
          const param = device.createBuffer({ size: 4 * words, usage });
          const grad = device.createBuffer({ size: 4 * words, usage });
          buffers.push(param, grad);
          fill(param, words, 1000 * s + 2 * i, 0, bf16);
          fill(grad, words, 1000 * s + 2 * i + 1, 1, bf16);
          return { param, grad, length: n, name: `t${i}` };
        });
      opts.push(make(kind, tensors));
    }
    const validation = await device.popErrorScope();
    const memory = await device.popErrorScope();
    if (memory || validation) {
      throw new Error(
        `${memory ? "out of memory" : "validation"}: ${
          (memory ?? validation)!.message
        }`,
      );
    }
    for (let r = 1; r < repeat; r++) {
      const t = await timeSteps(opts);
      say(
        `repeat ${r} | ${kind} | ${shape} | ${
          t.ms.toFixed(3)
        } ms/step (median ${t.medianMs.toFixed(3)})`,
      );
      if (withProfile) {
        say(
          `repeat ${r} | ${kind} | ${shape} | kernels ${
            JSON.stringify(await profile(opts[0]))
          }`,
        );
      }
    }
    Object.assign(row, await timeSteps(opts));
    if (withProfile) row.kernels = await profile(opts[0]);
  } catch (e) {
    const message = (e as Error).message;
    row.note = /out of memory|OutOfMemory|allocat/i.test(message)
      ? "out of memory"
      : `error: ${message.slice(0, 160)}`;
    // The device's own words go to the log (the table keeps the short note).
    say(`${row.impl} | ${kind} | ${shape} | ${message.slice(0, 300)}`);
  }
  for (const o of opts) o.dispose();
  for (const b of buffers) b.destroy();
  await device.queue.onSubmittedWorkDone();
  rows.push(row);
  say(
    `${row.impl} | ${kind} | ${shape} | ${
      row.ms !== undefined
        ? `${row.ms.toFixed(3)} ms/step (host ${
          row.hostMs!.toFixed(3)
        }, per-step median ${row.medianMs!.toFixed(3)}, marked span ${
          row.markedMs!.toFixed(3)
        }, submit ${row.submitMs!.toFixed(3)})`
        : row.note
    }${row.kernels ? ` | kernels ${JSON.stringify(row.kernels)}` : ""}`,
  );
}

// One tensor of 2^log2 elements; up to 2^24 the L2 cache could hold it, so
// steps rotate between 4 optimizers on 4 parameter/gradient sets.
function benchOneTensor(kind: Kind, log2: number, profiled: boolean) {
  const n = 2 ** log2;
  return bench(kind, `2^${log2}`, [[n]], n <= 2 ** 24 ? 4 : 1, profiled);
}

for (const log2 of sizes) {
  for (const kind of wanted) {
    await benchOneTensor(
      kind,
      log2,
      values["profile-all"] ||
        (kind.startsWith("MicroAdam") && log2 === Math.max(...sizes)),
    );
  }
}
// The TF.js rows' ratio needs our AdamW at each of their sizes: AdamW alone
// at those that --sizes leaves out (2^20 by default).
if (!values["skip-tfjs"] && wanted.includes("AdamW")) {
  for (const log2 of tfjsSizes.filter((s) => !sizes.includes(s))) {
    await benchOneTensor("AdamW", log2, false);
  }
}
for (const name of llamaNames) {
  const shapes = LLAMA[name];
  const kinds = llamaKinds(name);
  for (const layout of layouts) {
    for (const kind of kinds) {
      await bench(
        kind,
        llamaLabel(name, layout === "shared"),
        shapes,
        1,
        false,
        layout === "shared",
      );
    }
  }
}
// ---- A training step: the model against the optimizer ---------------------------------------

/** GPU medians of a training step's two passes, per optimizer. */
interface TrainingRow {
  optimizer: string;
  modelMs: number;
  optimizerMs: number;
}
const trainingRows: TrainingRow[] = [];
if (!values["skip-training"]) {
  // The README's comparison model (MLP 784-256-128-10, batch 128) on
  // synthetic images of Fashion-MNIST's shape: a step's cost does not depend
  // on the pixels, and the GPU machine has no copy of the data set.
  const data = syntheticImageData({ train: 60000, test: 1000, seed: 0 });
  for (const opt of ["microadam", "adamw", "amsgrad"] as const) {
    const config = {
      ...defaultConfig(),
      optimizer: opt,
      lr: TUNED_LR[opt],
      epochs: 1,
      progress: false,
    };
    const trainer = new Trainer(device, config, data);
    await trainer.timeSteps(10);
    const t = await trainer.timeSteps(200);
    trainer.dispose();
    trainingRows.push({ optimizer: OPTIMIZER_NAMES[opt], ...t });
    say(
      `training step | ${OPTIMIZER_NAMES[opt]} | model ${
        t.modelMs.toFixed(3)
      } ms, optimizer ${t.optimizerMs.toFixed(3)} ms (medians of 200)`,
    );
  }
}

// ---- Residency and streaming diagnostics (--residency), after the timings -------------------
// Run before the timings, they left the 2^24 rows 2.4x slower (MicroAdam f32
// 0.626 against 0.263 ms in a process without them, on the H200), as the
// checks did.

if (values.residency) {
  // The kernels of the build being timed (--impl).
  const { kernelSource } = (await import(
    new URL(
      values.impl!.replace(/mod\.ts$/, "src/gpu/kernels.ts"),
      import.meta.url,
    ).href
  )) as typeof import("../src/gpu/kernels.ts");
  const subgroups = ext.hasSubgroups?.(device) ?? false;
  const exact = ext.hasExactFma(device) ? 1 : 0;
  const kernels: [string, string, Record<string, number>][] = [
    ["copy (4 vec4 per thread)", copyKernel(4, true), {}],
    ["adam4", kernelSource("adam4"), {}],
    ["checkFinite4", kernelSource("checkFinite4"), {}],
  ];
  for (const bf16 of [0, 1]) {
    for (
      const name of ["microadamSelectFast", "microadamUpdateFast"] as const
    ) {
      kernels.push([
        `${name} ${bf16 ? "bf16" : "f32"}`,
        kernelSource(name, { subgroups }),
        { BF16: bf16, EXACT_FMA: exact },
      ]);
    }
    kernels.push([
      `microadamSelectFast ${bf16 ? "bf16" : "f32"} (no subgroups)`,
      kernelSource("microadamSelectFast"),
      { BF16: bf16, EXACT_FMA: exact },
    ]);
  }
  for (const [name, code, constants] of kernels) {
    try {
      const peak = await residency(device, code, constants);
      say(
        `residency | ${name} | ${peak} workgroups at once (${
          (peak / 132).toFixed(2)
        } per SM if 132 SMs)`,
      );
    } catch (e) {
      say(`residency | ${name} | failed: ${(e as Error).message}`);
    }
  }
  for (const kb of [0, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48]) {
    const peak = await residency(device, pressureKernel(kb, 4));
    say(
      `residency | ${kb} KiB workgroup memory | ${
        (peak / 132).toFixed(2)
      } per SM`,
    );
  }
  for (const live of [8, 16, 24, 32, 40, 48, 64, 96]) {
    const peak = await residency(device, pressureKernel(0, live));
    say(
      `residency | ${live} values live per thread | ${
        (peak / 132).toFixed(2)
      } per SM`,
    );
  }
  for (const items of [1, 4, 8, 12, 16]) {
    for (const style of ["loop, a check per item", "loop", "unrolled"]) {
      const code = copyKernel(
        items,
        style.includes("check"),
        style === "unrolled",
      );
      const r = await wgslCopy(2 ** copyLog2, code, items);
      const peak = await residency(device, code);
      say(
        `streaming | copy, ${items} vec4 per thread, ${style} | ${
          r.tbps.toFixed(2)
        } TB/s, ${(peak / 132).toFixed(2)} workgroups per SM`,
      );
    }
  }
}

// ---- The driver's report of the kernels (--registers DIR) ----------------------------------

if (values.registers) {
  const run = await new Deno.Command("python3", {
    args: [`${here}vkstats.py`, values.registers],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(run.stdout) +
    new TextDecoder().decode(run.stderr);
  for (const line of text.trim().split("\n")) say(line);
  if (!run.success) say(`registers: bench/vkstats.py exited with ${run.code}`);
}

// ---- The correctness checks, after the timings ---------------------------------------------
// They run last: run first, they left the process slow for the next seconds
// (the copy read 1.53 instead of 4.2 TB/s and 2^24 rows 2-3x their time in a
// process of their own, on the H200), whatever the cause.

if (!values["skip-checks"]) {
  try {
    await goldenChecks();
    await cpuCheck("f32", {}, "defaults D = Q = 4096 (one-pass kernels)");
    await cpuCheck("bf16", {}, "defaults D = Q = 4096 (one-pass kernels)");
    await cpuCheck(
      "f32",
      { topkBlockSize: 1000, efBlockSize: 300 },
      "D = 1000, Q = 300 (general kernels)",
    );
    await cpuCheck(
      "bf16",
      { topkBlockSize: 1000, efBlockSize: 300 },
      "D = 1000, Q = 300 (general kernels)",
    );
  } catch (e) {
    checks.push({
      name: "correctness checks",
      result: `threw: ${(e as Error).message}`,
      ok: false,
    });
  }
  for (const c of checks) {
    say(`check: ${c.ok ? "PASS" : "FAIL"} ${c.name}: ${c.result}`);
  }
}

// ---- What the device lets a process hold (--memory-probe), after the timings ---------------

/**
 * Storage buffers of `mib` MiB created until the device refuses one: how
 * many it took and their total, then all freed.
 */
async function probeMemory(mib: number): Promise<void> {
  if (mib * 2 ** 20 > device.limits.maxBufferSize) {
    say(
      `memory probe: ${mib} MiB is above maxBufferSize (${device.limits.maxBufferSize} bytes)`,
    );
    return;
  }
  const held: GPUBuffer[] = [];
  // Past any GPU's memory today: a device that allocates lazily stops here.
  const cap = Math.floor(192 * 1024 / mib);
  let refusal = `none before ${cap} buffers`;
  while (held.length < cap) {
    device.pushErrorScope("out-of-memory");
    const b = device.createBuffer({ size: mib * 2 ** 20, usage });
    const error = await device.popErrorScope();
    if (error) {
      b.destroy();
      refusal = error.message.slice(0, 120);
      break;
    }
    held.push(b);
  }
  say(
    `memory probe: ${held.length} buffers of ${mib} MiB = ${
      (held.length * mib / 1024).toFixed(2)
    } GiB held; then refused (${refusal})`,
  );
  for (const b of held) b.destroy();
  await device.queue.onSubmittedWorkDone();
}
// Before the device is destroyed: on a destroyed device every buffer
// "succeeds" (call D of round 22 held 192 GiB that way).
for (const mib of probeSizes) await probeMemory(mib);

device.destroy();

/** The last lines of a peer benchmark's stderr, for a failed run's row. */
function stderrTail(r: Deno.CommandOutput): string {
  return new TextDecoder().decode(r.stderr).trim().split("\n").slice(-3)
    .join(" | ");
}

// ---- PyTorch fused AdamW, fused AMSGrad and the copy bandwidth -----------------------------

interface PeerRow {
  label: string;
  /** bench/torch_adamw.py's rows: "AdamW" or "AMSGrad" (fp32 only). */
  optimizer?: string;
  dtype?: string;
  params: number | null;
  ms?: number;
  oom?: boolean;
  peakGiB?: number;
  error?: string;
}
let torchCopy: { tbps: number } | undefined;
const torchRows: PeerRow[] = [];
if (!values["skip-torch"]) {
  // The LLaMA shapes under the labels our rows have (less ", shared buffers").
  const shapesOf = (names: string[]) =>
    Object.fromEntries(names.map((n) => [llamaLabel(n), LLAMA[n]]));
  try {
    const r = await new Deno.Command("python3", {
      args: [
        `${here}torch_adamw.py`,
        JSON.stringify({
          sizes: sizes.map((s) => 2 ** s),
          shapes: shapesOf(llamaNames),
          steps,
          warmupMs: warmupMs + heatMs,
          // Fused AMSGrad fp32, the AMSGrad rows' baseline, where they run.
          amsgrad: wanted.includes("AMSGrad")
            ? {
              sizes: sizes.map((s) => 2 ** s),
              shapes: shapesOf(
                llamaNames.filter((n) => llamaKinds(n).includes("AMSGrad")),
              ),
            }
            : undefined,
        }),
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    for (const line of new TextDecoder().decode(r.stdout).trim().split("\n")) {
      if (!line.startsWith("{")) continue;
      const x = JSON.parse(line);
      if (x.copy) torchCopy = x.copy;
      else if (x.device) say(`torch ${x.torch} on ${x.device}`);
      else {
        x.optimizer ??= "AdamW";
        torchRows.push(x);
        say(
          `torch fused ${x.optimizer} | ${x.dtype} | ${x.label} | ${
            x.oom
              ? `out of memory (peak ${x.peakGiB.toFixed(1)} GiB)`
              : `${x.ms.toFixed(3)} ms/step (peak ${x.peakGiB.toFixed(1)} GiB)`
          }`,
        );
      }
    }
    if (!r.success) say(`torch: ${stderrTail(r)}`);
  } catch (e) {
    say(`torch unavailable: ${(e as Error).message}`);
  }
  if (torchCopy) {
    say(
      `copy (torch device-to-device, 2^28 f32, bytes read + written): ${
        torchCopy.tbps.toFixed(2)
      } TB/s`,
    );
  }
}

// ---- TensorFlow.js Adam --------------------------------------------------------------------

const tfjsRows: PeerRow[] = [];
if (!values["skip-tfjs"]) {
  try {
    const r = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--no-config",
        "--cached-only",
        `${here}tfjs_adam.ts`,
        "--sizes",
        values["tfjs-sizes"]!,
        "--steps",
        String(steps),
        "--warmup-ms",
        String(warmupMs + heatMs),
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    for (const line of new TextDecoder().decode(r.stdout).trim().split("\n")) {
      if (!line.startsWith("{")) continue;
      const x = JSON.parse(line);
      tfjsRows.push(x);
      say(
        `TF.js 4.22 Adam (webgpu) | f32 | ${x.label} | ${
          x.ms.toFixed(3)
        } ms/step (host, ${steps} steps, one readback)`,
      );
    }
    if (!r.success) say(`tfjs: ${stderrTail(r)}`);
  } catch (e) {
    say(`tfjs unavailable: ${(e as Error).message}`);
  }
}

// ---- The table ------------------------------------------------------------------------------

const bw = torchCopy?.tbps ?? copy.tbps; // TB/s, the floor's bandwidth
/**
 * The torch row a row of ours is compared with: fused AMSGrad fp32 for
 * AMSGrad (one more state tensor), fused AdamW at the row's dtype for the
 * others.
 */
const torchBaseline = (optimizer: string) =>
  optimizer === "AMSGrad" ? "AMSGrad" : "AdamW";
const torchMs = (optimizer: string, dtype: string, shape: string) =>
  torchRows.find((r) =>
    r.optimizer === torchBaseline(optimizer) &&
    // PyTorch's multi-tensor step does not depend on where tensors lie.
    r.label === shape.replace(SHARED_SUFFIX, "") &&
    r.dtype === (dtype === "f32" ? "float32" : "bfloat16")
  )?.ms;
/**
 * Bytes a torch fused step moves per parameter: g 4, p 8, m 8, v 8 in fp32
 * (28, as our AdamW unchecked), AMSGrad's max_v 8 more (36); half in bf16.
 */
const torchBytesPerParam = (r: PeerRow) =>
  (28 + (r.optimizer === "AMSGrad" ? 8 : 0)) / (r.dtype === "float32" ? 1 : 2);
const fmt = (x: number | undefined, d = 3) =>
  x === undefined ? "—" : x.toFixed(d);
const lines: string[] = [];
lines.push(
  `copy bandwidth: torch ${fmt(torchCopy?.tbps, 2)} TB/s, WGSL ${
    copy.tbps.toFixed(2)
  } TB/s; floor = bytes / ${
    bw.toFixed(2)
  } TB/s; MicroAdam weight decay ${microadamWd}`,
);
lines.push(
  "| implementation | optimizer | dtype | shape | ms/step | host ms | median ms | B/param | floor ms | × floor | % copy BW | vs torch ¹ |",
);
lines.push(
  "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
);
for (const r of rows) {
  const floor = r.params * r.bytesPerParam / bw / 1e9;
  const t = torchMs(r.optimizer, r.dtype, r.shape);
  lines.push(
    `| ${r.impl} | ${r.optimizer} | ${r.dtype} | ${r.shape} | ${
      r.ms !== undefined ? fmt(r.ms) : r.note
    } | ${fmt(r.hostMs)} | ${fmt(r.medianMs)} | ${
      r.bytesPerParam.toFixed(2)
    } | ${fmt(floor)} | ${r.ms ? fmt(r.ms / floor, 2) : "—"} | ${
      r.ms ? (100 * floor / r.ms).toFixed(0) : "—"
    } | ${r.ms && t ? fmt(r.ms / t, 2) : "—"} |`,
  );
}
for (const r of torchRows) {
  const bpp = torchBytesPerParam(r);
  const floor = r.params ? r.params * bpp / bw / 1e9 : undefined;
  lines.push(
    `| torch fused ${r.optimizer} | ${r.optimizer} | ${
      r.dtype === "float32" ? "f32" : "bf16"
    } | ${r.label} | ${
      r.oom ? `out of memory (${fmt(r.peakGiB, 1)} GiB held)` : fmt(r.ms)
    } | — | — | ${bpp} | ${fmt(floor)} | ${
      r.ms && floor ? fmt(r.ms / floor, 2) : "—"
    } | ${r.ms && floor ? (100 * floor / r.ms).toFixed(0) : "—"} | ${
      r.ms ? "1.00" : "—"
    } |`,
  );
}
for (const r of tfjsRows) {
  const floor = r.params! * 28 / bw / 1e9;
  const ours = rows.find((x) =>
    x.optimizer === "AdamW" && x.shape === r.label && x.ms
  )?.ms;
  lines.push(
    `| TF.js 4.22 (webgpu) | Adam | f32 | ${r.label} | ${fmt(r.ms)} (host) | ${
      fmt(r.ms)
    } | — | ≥ 28 | ${fmt(floor)} | ${fmt(r.ms! / floor, 2)} | ${
      (100 * floor / r.ms!).toFixed(0)
    } | ${ours ? `our AdamW ${fmt(r.ms! / ours, 1)}× faster` : "—"} |`,
  );
}
lines.push(
  "",
  "¹ ms/step over torch fused AdamW's at the row's dtype and shape; AMSGrad rows over torch fused AMSGrad fp32's (torch.optim.Adam(amsgrad=True, fused=True), one more state tensor); — where torch has no such row or ran out of memory.",
);
if (trainingRows.length) {
  lines.push(
    "",
    "Training step, MLP 784-256-128-10, batch 128 (GPU medians of 200 steps):",
    "| optimizer | forward + backward ms | optimizer ms | optimizer share |",
    "| --- | ---: | ---: | ---: |",
  );
  for (const r of trainingRows) {
    lines.push(
      `| ${r.optimizer} | ${fmt(r.modelMs)} | ${fmt(r.optimizerMs)} | ${
        (100 * r.optimizerMs / (r.modelMs + r.optimizerMs)).toFixed(1)
      } % |`,
    );
  }
}
if (checks.length) {
  lines.push("");
  for (const c of checks) {
    lines.push(`${c.ok ? "PASS" : "FAIL"} ${c.name}: ${c.result}`);
  }
}
console.log("\n" + lines.join("\n"));
if (values.out) {
  await Deno.mkdir(values.out, { recursive: true });
  const tag = values.label!.replace(/[^A-Za-z0-9_-]+/g, "_");
  await Deno.writeTextFile(
    `${values.out}/device_${tag}.log`,
    [...log, "", ...lines].join("\n") + "\n",
  );
  await Deno.writeTextFile(
    `${values.out}/device_${tag}.json`,
    JSON.stringify(
      { copy, torchCopy, checks, rows, torchRows, tfjsRows, trainingRows },
      null,
      1,
    ),
  );
}
