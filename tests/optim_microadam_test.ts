/**
 * GPU MicroAdam against the exact CPU reference (MicroAdamCpu), on this
 * machine's WebGPU adapter: f32 and bf16 modes on random data, tensors
 * split over several storage bindings (llvmpipe's real 128 MiB limit and an
 * artificial 4 KiB one), gathered small tensors and tensors sharing a
 * buffer, param groups and schedules, non-finite gradients, encoding into
 * the caller's encoder, state size, checkpoints (GPU ↔ CPU) and disposal.
 *
 * Randomized tests print their seed; replay one with MICROADAM_SEED=<seed>.
 *
 * What is expected to be bit-identical and what is not: the selection path
 * (error feedback, top-k, EF statistics and codes) is computed with exact
 * integer arithmetic in the kernels, so the window, codes and stats buffers
 * must equal the CPU's byte for byte. The f32 update uses the device's sqrt
 * and division, so f32 parameters may differ by a few ulps (tolerance:
 * relative error 1e-5 per tensor); bf16 parameters are demanded within one
 * bf16 ulp on at least 99.9 % of coordinates.
 */

import assert from "node:assert/strict";
import { fastPath, MicroAdam } from "../src/optim/microadam.ts";
import { microAdamGeometry } from "../src/core/geometry.ts";
import { Adam, AdamW, AMSGrad } from "../src/optim/adam.ts";
import type { PlacementOptions } from "../src/optim/gpu_optimizer.ts";
import type { DType, MicroAdamOptions } from "../src/core/options.ts";
import {
  cosineDecay,
  linearWarmup,
  type Schedule,
  stepDecay,
} from "../src/core/schedule.ts";
import type { OptimizerState } from "../src/core/state.ts";
import { MicroAdamCpu } from "../src/reference/microadam.ts";
import type { CpuTensor } from "../src/reference/cpu_optimizer.ts";
import type { GpuTensor } from "../src/gpu/tensors.ts";
import type { Plan } from "../src/gpu/plan.ts";
import { readRanges } from "../src/gpu/buffers.ts";
import { NonFiniteGradientError } from "../src/errors.ts";
import { requestDevice } from "../src/gpu/device.ts";
import { hasSubgroups } from "../src/gpu/capabilities.ts";
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
  testDevice,
  testSeed,
  writeTo,
} from "./gpu_util.ts";

const device = await testDevice();
// The same adapter without the `subgroups` feature: the kernels' reductions
// in workgroup memory only.
const plainDevice = await requestDevice({ subgroups: false });

type Arr = Float32Array | Uint16Array;

/** The planner's output, for assertions on batching and splitting. */
function planOf(opt: MicroAdam | Adam): Plan {
  return (opt as unknown as { plan: Plan }).plan;
}

/** Dispatch groups holding a segment of tensor `i`. */
function groupsOfTensor(plan: Plan, i: number): number {
  return plan.batches.filter((g) => g.segments.some((s) => s.tensor === i))
    .length;
}

/** f32 sentinel for the gaps between tensors sharing a buffer. */
const SENTINEL_F32 = 1234.5;
/** bf16 sentinel (bits of 1232.0). */
const SENTINEL_BF16 = 0x449a;

interface GroupSpec {
  sizes: number[];
  lr?: number;
  weightDecay?: number;
  schedule?: Schedule;
}

interface TwinSpec {
  dtype: DType;
  /** Tensor sizes, or param groups of them. */
  sizes?: number[];
  groups?: GroupSpec[];
  options?: MicroAdamOptions & PlacementOptions;
  /** "own": one param and one grad buffer per tensor; "shared": one of each for all, at offsets with gaps. */
  layout?: "own" | "shared";
  seed: number;
  /** Scale of the initial parameters. */
  paramScale?: number;
  /** Device handed to the GPU optimizer (default: the test device). */
  gpuDevice?: GPUDevice;
}

interface Worst {
  steps: number;
  /** f32: largest per-tensor relative error over every compared step. */
  rel: number;
  /** f32: largest elementwise relative error. */
  elemRel: number;
  /** f32: largest ‖p_gpu − p_cpu‖ / ‖p_cpu − p0‖: the error relative to how far the params moved. */
  moveRel: number;
  /** Smallest fraction of bit-identical parameters at a compared step. */
  exact: number;
  /** bf16: smallest fraction within one ulp. */
  withinOne: number;
  /** bf16: largest distance in ulps. */
  ulps: number;
}

/**
 * One GPU MicroAdam and one MicroAdamCpu fed the same parameters and
 * gradients. `compare()` demands byte-identical state and parameters within
 * the tolerances described at the top of this file.
 */
class Twin {
  readonly dtype: DType;
  readonly bpe: 2 | 4;
  readonly sizes: number[];
  readonly names: string[];
  readonly gpuTensors: GpuTensor[];
  readonly cpuParams: Arr[];
  readonly cpuGrads: Arr[];
  /** Initial parameters (f32 mode: to compare displacements). */
  readonly initial: Arr[];
  readonly gpu: MicroAdam;
  readonly cpu: MicroAdamCpu;
  /** The device of the GPU twin and of its tensors. */
  readonly device: GPUDevice;
  readonly r: () => number;
  readonly worst: Worst = {
    steps: 0,
    rel: 0,
    elemRel: 0,
    moveRel: 0,
    exact: 1,
    withinOne: 1,
    ulps: 0,
  };
  /** Shared layout: every element of the param buffer outside a tensor. */
  readonly #gaps: number[] = [];
  readonly #sharedParam?: GPUBuffer;

  constructor(spec: TwinSpec) {
    this.device = spec.gpuDevice ?? device;
    this.dtype = spec.dtype;
    this.bpe = spec.dtype === "bf16" ? 2 : 4;
    this.r = rng(spec.seed);
    const groups = spec.groups ?? [{ sizes: spec.sizes ?? [] }];
    this.sizes = groups.flatMap((g) => g.sizes);
    this.names = this.sizes.map((n, i) => `t${i}_${n}`);
    const init = this.sizes.map((n) => this.random(n, spec.paramScale ?? 1));
    this.cpuParams = init.map((p) => p.slice());
    this.initial = init;
    this.cpuGrads = init.map((p) =>
      p instanceof Uint16Array
        ? new Uint16Array(p.length)
        : new Float32Array(p.length)
    );
    if ((spec.layout ?? "own") === "own") {
      this.gpuTensors = init.map((p, i) => ({
        name: this.names[i],
        length: p.length,
        param: bufferFrom(this.device, p),
        grad: bufferFrom(this.device, this.zeros(p.length)),
      }));
    } else {
      const align = this.bpe === 2 ? 2 : 1;
      let cursor = 3;
      const offsets = this.sizes.map((n, i) => {
        const o = Math.ceil(cursor / align) * align;
        cursor = o + n + 1 + (i % 3) * 5; // gaps of 1, 6 and 11 elements
        return o;
      });
      const end = Math.ceil(cursor / align) * align;
      const whole = this.bpe === 2
        ? new Uint16Array(end).fill(SENTINEL_BF16)
        : new Float32Array(end).fill(SENTINEL_F32);
      const inside = new Uint8Array(end);
      offsets.forEach((o, i) => {
        whole.set(init[i], o);
        inside.fill(1, o, o + this.sizes[i]);
      });
      for (let j = 0; j < end; j++) if (!inside[j]) this.#gaps.push(j);
      const param = bufferFrom(this.device, whole);
      const grad = bufferFrom(this.device, this.zeros(end));
      this.#sharedParam = param;
      this.gpuTensors = offsets.map((offset, i) => ({
        name: this.names[i],
        length: this.sizes[i],
        offset,
        param,
        grad,
      }));
    }
    const options = { ...spec.options, dtype: spec.dtype };
    let at = 0;
    const gpuGroups = groups.map((g) => ({
      lr: g.lr,
      weightDecay: g.weightDecay,
      schedule: g.schedule,
      params: g.sizes.map(() => this.gpuTensors[at++]),
    }));
    at = 0;
    const cpuGroups = groups.map((g) => ({
      lr: g.lr,
      weightDecay: g.weightDecay,
      schedule: g.schedule,
      params: g.sizes.map((): CpuTensor => {
        const i = at++;
        return {
          name: this.names[i],
          param: this.cpuParams[i],
          grad: this.cpuGrads[i],
        };
      }),
    }));
    this.gpu = new MicroAdam(this.device, gpuGroups, options);
    // The CPU twin takes the hyperparameters, not the GPU's placement options.
    const { maxBindingBytes: _bind, gatherBelow: _gather, ...hyper } = options;
    this.cpu = new MicroAdamCpu(cpuGroups, hyper);
  }

  zeros(n: number): Arr {
    return this.bpe === 2 ? new Uint16Array(n) : new Float32Array(n);
  }

  random(n: number, scale = 1): Arr {
    return this.bpe === 2
      ? randomBf16(this.r, n, scale)
      : randomF32(this.r, n, scale);
  }

  /** Random gradients, each tensor at its own scale (1e-3 .. 10). */
  randomGrads(): Arr[] {
    return this.sizes.map((n) => this.random(n, 10 ** (4 * this.r() - 3)));
  }

  /** Writes `grads` into the GPU gradient buffers and the CPU gradients. */
  write(grads: Arr[]): void {
    grads.forEach((g, i) => {
      this.cpuGrads[i].set(g);
      writeTo(
        this.device,
        this.gpuTensors[i].grad,
        g,
        this.gpuTensors[i].offset,
      );
    });
  }

  /**
   * Writes `grads` with NaN in every gradient-buffer element outside the
   * tensors: the gaps of a shared buffer, the padding half-word of odd bf16
   * tensors in buffers of their own.
   */
  writeWithJunk(grads: Arr[]): void {
    grads.forEach((g, i) => this.cpuGrads[i].set(g));
    const shared = this.gpuTensors[0].offset !== undefined;
    if (shared) {
      const buffer = this.gpuTensors[0].grad;
      const n = buffer.size / this.bpe;
      const whole = this.bpe === 2
        ? new Uint16Array(n).fill(0x7fc0)
        : new Float32Array(n).fill(NaN);
      grads.forEach((g, i) => whole.set(g, this.gpuTensors[i].offset));
      writeTo(this.device, buffer, whole);
    } else {
      grads.forEach((g, i) => {
        const n = this.gpuTensors[i].grad.size / this.bpe;
        const whole = this.bpe === 2
          ? new Uint16Array(n).fill(0x7fc0)
          : new Float32Array(n).fill(NaN);
        whole.set(g);
        writeTo(this.device, this.gpuTensors[i].grad, whole);
      });
    }
  }

  /** One step of both (a CPU NonFiniteGradientError is swallowed: the GPU reports its own later). */
  step(grads: Arr[] = this.randomGrads()): void {
    this.write(grads);
    this.gpu.step();
    try {
      this.cpu.step();
    } catch (e) {
      if (!(e instanceof NonFiniteGradientError)) throw e;
    }
  }

  /** The GPU parameters, per tensor. */
  async gpuParams(): Promise<Arr[]> {
    const bytes = await readRanges(
      this.device,
      this.gpuTensors.map((t) => ({
        buffer: t.param,
        offset: (t.offset ?? 0) * this.bpe,
        size: t.length * this.bpe,
      })),
    );
    return bytes.map((b, i) =>
      this.bpe === 2
        ? new Uint16Array(b.buffer, 0, this.sizes[i])
        : new Float32Array(b.buffer, 0, this.sizes[i])
    );
  }

  /** Shared layout: asserts the gaps between tensors still hold the sentinel. */
  async assertGapsUntouched(label: string): Promise<void> {
    if (!this.#sharedParam) return;
    const [b] = await readRanges(this.device, [{
      buffer: this.#sharedParam,
      offset: 0,
      size: this.#sharedParam.size,
    }]);
    const whole = this.bpe === 2
      ? new Uint16Array(b.buffer, 0, b.byteLength / 2)
      : new Float32Array(b.buffer, 0, b.byteLength / 4);
    const want = this.bpe === 2 ? SENTINEL_BF16 : SENTINEL_F32;
    for (const j of this.#gaps) {
      if (whole[j] !== want) {
        assert.fail(
          `${label}: element ${j} of the shared param buffer lies between tensors but was overwritten: ${
            whole[j]
          }`,
        );
      }
    }
  }

  /**
   * Asserts byte-identical state (counters included) and parameters within
   * tolerance; records the worst numbers.
   */
  async compare(label: string): Promise<void> {
    const gs = await this.gpu.stateDict();
    const cs = this.cpu.stateDict();
    const diff = stateDifference(gs, cs);
    assert.equal(
      diff,
      undefined,
      `${label}: GPU state differs from CPU's: ${diff}`,
    );
    const gst = await this.gpu.status();
    const cst = this.cpu.status();
    assert.deepEqual(gst, cst, `${label}: status`);
    const got = await this.gpuParams();
    this.worst.steps++;
    if (this.dtype === "f32") {
      let exact = 0;
      let n = 0;
      got.forEach((g, i) => {
        const c = compareF32(
          g as Float32Array,
          this.cpuParams[i] as Float32Array,
        );
        exact += c.exact * g.length;
        n += g.length;
        this.worst.rel = Math.max(this.worst.rel, c.rel);
        this.worst.elemRel = Math.max(this.worst.elemRel, c.maxElemRel);
        // Tighter than the bound on p: the parameters' displacement from p0
        // agrees within 1e-4, plus ~8 ulps of p for the roundings of p itself.
        const cpu = this.cpuParams[i] as Float32Array;
        const pNorm = norm(cpu);
        const moveNorm = norm(
          displacement(cpu, this.initial[i] as Float32Array),
        );
        const errNorm = distance(g as Float32Array, cpu);
        const moveRel = moveNorm > 0
          ? errNorm / moveNorm
          : errNorm > 0
          ? Infinity
          : 0;
        this.worst.moveRel = Math.max(this.worst.moveRel, moveRel);
        assert.ok(
          errNorm <= 1e-4 * moveNorm + 1e-6 * pNorm,
          `${label}: tensor ${
            this.names[i]
          }: ‖p_gpu − p_cpu‖ = ${errNorm} exceeds ` +
            `1e-4·‖p_cpu − p0‖ + 1e-6·‖p_cpu‖ (‖p_cpu − p0‖ = ${moveNorm}, ‖p_cpu‖ = ${pNorm})`,
        );
        assert.equal(
          c.nonFinite,
          0,
          `${label}: ${this.names[i]} has non-finite params`,
        );
        assert.ok(
          c.rel <= 1e-5,
          `${label}: tensor ${
            this.names[i]
          }: ‖p_gpu − p_cpu‖/‖p_cpu‖ = ${c.rel} > 1e-5 ` +
            `(worst coordinate ${c.worst}: gpu ${g[c.worst]}, cpu ${
              this.cpuParams[i][c.worst]
            })`,
        );
      });
      this.worst.exact = Math.min(this.worst.exact, exact / n);
    } else {
      let exact = 0;
      let one = 0;
      let n = 0;
      let worst = { ulps: 0, tensor: -1, coord: -1 };
      got.forEach((g, i) => {
        const c = compareBf16(
          g as Uint16Array,
          this.cpuParams[i] as Uint16Array,
        );
        exact += c.exact * c.n;
        one += c.withinOne * c.n;
        n += c.n;
        if (c.worstUlps > worst.ulps) {
          worst = { ulps: c.worstUlps, tensor: i, coord: c.worst };
        }
      });
      this.worst.exact = Math.min(this.worst.exact, exact / n);
      this.worst.withinOne = Math.min(this.worst.withinOne, one / n);
      this.worst.ulps = Math.max(this.worst.ulps, worst.ulps);
      assert.ok(
        one / n >= 0.999,
        `${label}: only ${
          (100 * one / n).toFixed(4)
        } % of bf16 params within 1 ulp ` +
          `(exact ${
            (100 * exact / n).toFixed(4)
          } %); worst: ${worst.ulps} ulps at tensor ${
            this.names[worst.tensor]
          } coordinate ${worst.coord}`,
      );
    }
  }

  /** Prints the worst numbers seen. */
  report(label: string): void {
    const w = this.worst;
    console.log(
      this.dtype === "f32"
        ? `${label}: ${w.steps} compared steps; max per-tensor relative error ${
          w.rel.toExponential(3)
        }, max elementwise relative error ${
          w.elemRel.toExponential(3)
        }, max ‖p_gpu − p_cpu‖/‖p_cpu − p0‖ ${
          w.moveRel.toExponential(3)
        }, min bit-identical fraction ${(100 * w.exact).toFixed(4)} %`
        : `${label}: ${w.steps} compared steps; min exact ${
          (100 * w.exact).toFixed(4)
        } %, min within 1 ulp ${
          (100 * w.withinOne).toFixed(4)
        } %, worst ${w.ulps} ulps`,
    );
  }

  dispose(): void {
    this.gpu.dispose();
    for (
      const t of new Set(this.gpuTensors.flatMap((t) => [t.param, t.grad]))
    ) {
      t.destroy();
    }
  }
}

/** Euclidean norm. */
function norm(x: Float32Array): number {
  let s = 0;
  for (let j = 0; j < x.length; j++) s += x[j] * x[j];
  return Math.sqrt(s);
}

/** ‖a − b‖ (in f64). */
function distance(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let j = 0; j < a.length; j++) s += (a[j] - b[j]) ** 2;
  return Math.sqrt(s);
}

/** p − p0, rounded to f32. */
function displacement(p: Float32Array, p0: Float32Array): Float32Array {
  const out = new Float32Array(p.length);
  for (let j = 0; j < p.length; j++) out[j] = p[j] - p0[j];
  return out;
}

const SIZES = [1, 7, 1000, 4097, 70001];
const STRADDLE = { topkBlockSize: 1000, efBlockSize: 300 } as const;

// ---- 1, 2. f32 and bf16 against the CPU reference on random data --------

for (
  const [label, options] of [
    ["defaults (D = Q = 4096)", {}],
    [
      "D = 1000, Q = 300 (EF blocks straddle top-k blocks), m = 7, density 3 %, wd 0.05",
      {
        ...STRADDLE,
        window: 7,
        density: 0.03,
        weightDecay: 0.05,
        lr: 3e-3,
      },
    ],
  ] as const
) {
  Deno.test(`f32: GPU == MicroAdamCpu over 50 steps, sizes ${SIZES.join("/")}, ${label}`, async () => {
    const seed = testSeed(`f32 ${label}`);
    const twin = new Twin({ dtype: "f32", sizes: SIZES, options, seed });
    try {
      for (let s = 1; s <= 50; s++) {
        twin.step();
        await twin.compare(`seed ${seed}, step ${s}`);
      }
      twin.report(`f32 ${label}`);
    } finally {
      twin.dispose();
    }
  });

  Deno.test(`bf16: GPU == MicroAdamCpu over 30 steps, sizes ${SIZES.join("/")}, ${label}`, async () => {
    const seed = testSeed(`bf16 ${label}`);
    const twin = new Twin({ dtype: "bf16", sizes: SIZES, options, seed });
    try {
      for (let s = 1; s <= 30; s++) {
        twin.step();
        await twin.compare(`seed ${seed}, step ${s}`);
      }
      twin.report(`bf16 ${label}`);
    } finally {
      twin.dispose();
    }
  });
}

Deno.test("compare helpers: a one-ulp f32 drift passes, a wrong state or bf16 params fail", async () => {
  // The comparisons above must be able to fail: corrupt one side on purpose.
  const twin = new Twin({ dtype: "bf16", sizes: [3000], seed: 1 });
  try {
    twin.step();
    twin.step();
    await twin.compare("untouched");
    // One window entry differs: the state comparison must notice.
    const state = twin.cpu.stateDict();
    state.tensors[0].buffers.window[7] ^= 0x01; // a value bit of entry 1
    twin.cpu.loadStateDict(state);
    await assert.rejects(twin.compare("corrupted window"), /window: 1 of/);
    twin.cpu.loadStateDict(await twin.gpu.stateDict());
    // 1 % of the params off by 2 ulps: below the 99.9 % bar.
    const p = twin.cpuParams[0] as Uint16Array;
    for (let j = 0; j < 30; j++) p[j * 100] += 2;
    await assert.rejects(twin.compare("params off"), /within 1 ulp/);
  } finally {
    twin.dispose();
  }
});

// ---- 3. Tensors over the storage-binding limit ---------------------------

Deno.test({
  name:
    "chunked: a 40M-element f32 tensor (160 MB) over llvmpipe's 128 MiB binding limit, 2 steps == CPU",
  async fn() {
    const limit = device.limits.maxStorageBufferBindingSize;
    const n = 40_000_000;
    assert.ok(
      4 * n > limit,
      `binding limit is ${limit} bytes: no split needed`,
    );
    const seed = testSeed("40M");
    const t0 = performance.now();
    const twin = new Twin({ dtype: "f32", sizes: [n, 1000], seed });
    try {
      const plan = planOf(twin.gpu);
      const parts = groupsOfTensor(plan, 0);
      console.log(
        `40M tensor: ${parts} batches (binding limit ${limit} B), state ${twin.gpu.stateBytes()} B`,
      );
      assert.ok(
        parts >= 2,
        `expected the 160 MB tensor split, got ${parts} group(s)`,
      );
      for (const g of plan.batches) {
        assert.ok(g.params.size <= limit && g.grads.size <= limit);
      }
      for (let s = 1; s <= 2; s++) {
        const t1 = performance.now();
        const grads = twin.randomGrads();
        const t2 = performance.now();
        twin.write(grads);
        twin.gpu.step();
        await device.queue.onSubmittedWorkDone();
        const t3 = performance.now();
        twin.cpu.step();
        const t4 = performance.now();
        await twin.compare(`seed ${seed}, step ${s}`);
        const t5 = performance.now();
        const sec = (a: number, b: number) => ((b - a) / 1000).toFixed(1);
        console.log(
          `step ${s}: random grads ${sec(t1, t2)} s, GPU ${
            sec(t2, t3)
          } s, CPU ${sec(t3, t4)} s, compare ${sec(t4, t5)} s`,
        );
      }
      twin.report("f32 40M + 1000");
      console.log(
        `40M test: ${((performance.now() - t0) / 1000).toFixed(1)} s`,
      );
    } finally {
      twin.dispose();
    }
  },
});

for (const dtype of ["f32", "bf16"] as const) {
  Deno.test(`chunked: maxBindingBytes 4096, ${dtype}, odd lengths split into many groups, 10 steps == CPU`, async () => {
    const seed = testSeed(`chunked ${dtype}`);
    const sizes = [5003, 777, 12345, 3, 64, 1, 299, 2001];
    const twin = new Twin({
      dtype,
      sizes,
      seed,
      options: {
        topkBlockSize: 100, // chunks at multiples of lcm(100, 8) = 200
        efBlockSize: 250, // EF blocks straddle chunk and top-k boundaries
        density: 0.05,
        window: 4,
        maxBindingBytes: 4096,
        // Chunked tensors only: the planner test below covers gathering.
        gatherBelow: 300,
      },
    });
    try {
      const plan = planOf(twin.gpu);
      const room = 4096 / twin.bpe;
      sizes.forEach((n, i) => {
        const parts = groupsOfTensor(plan, i);
        if (n * twin.bpe > 4096) {
          assert.ok(
            parts >= Math.ceil(n / room),
            `${twin.names[i]}: ${parts} groups`,
          );
        }
        for (const g of plan.batches) {
          for (const s of g.segments) {
            if (s.tensor === i && s.coordStart > 0) {
              assert.equal(
                s.coordStart % 200,
                0,
                "chunks start on block and word boundaries",
              );
            }
          }
        }
      });
      for (const g of plan.batches) {
        assert.ok(g.params.size <= 4096, `binding of ${g.params.size} B`);
        assert.ok(g.grads.size <= 4096, `binding of ${g.grads.size} B`);
      }
      const gathered = plan.batches.filter((g) => g.gather).length;
      console.log(
        `${dtype}: ${plan.batches.length} batches, ${gathered} gathered`,
      );
      assert.ok(gathered >= 1, "the tensors of <= 300 elements are gathered");
      for (let s = 1; s <= 10; s++) {
        twin.step();
        await twin.compare(`seed ${seed}, step ${s}`);
      }
      twin.report(`chunked ${dtype}`);
    } finally {
      twin.dispose();
    }
  });
}

Deno.test({
  name:
    "planner: a gathered tensor larger than maxBindingBytes is split, not gathered",
  // A batch's first tensor used to skip the binding-room check, so a
  // 5003-element f32 tensor got a 20032-byte arena binding despite
  // maxBindingBytes 4096.
  fn() {
    const mk = (n: number) => ({
      length: n,
      param: device.createBuffer({ size: 4 * n, usage: TENSOR_USAGE }),
      grad: device.createBuffer({ size: 4 * n, usage: TENSOR_USAGE }),
    });
    const tensors = [mk(5003), mk(777)];
    const opt = new MicroAdam(device, tensors, {
      topkBlockSize: 100,
      efBlockSize: 250,
      maxBindingBytes: 4096,
    });
    try {
      for (const g of planOf(opt).batches) {
        assert.ok(g.params.size <= 4096, `binding of ${g.params.size} B`);
      }
    } finally {
      opt.dispose();
      for (const t of tensors) {
        t.param.destroy();
        t.grad.destroy();
      }
    }
  },
});

// ---- Kernel edge paths ------------------------------------------------------

/**
 * The test device, reporting some limits lower than it has (the optimizer
 * reads its limits from `device.limits`); every call goes to the real device.
 */
function limitedDevice(overrides: Record<string, number>): GPUDevice {
  const limits = new Proxy(device.limits, {
    get: (t, k) =>
      typeof k === "string" && k in overrides
        ? overrides[k]
        : Reflect.get(t, k, t),
  });
  return new Proxy(device, {
    get(t, k) {
      if (k === "limits") return limits;
      const v = Reflect.get(t, k, t);
      return typeof v === "function" ? v.bind(t) : v;
    },
  });
}

const EDGES: {
  label: string;
  sizes: number[];
  options: MicroAdamOptions & PlacementOptions;
  check?: (opt: MicroAdam) => void;
  gpuDevice?: GPUDevice;
}[] = [
  {
    // Reaching 65536 workgroups for real takes ~9 s a step on llvmpipe (one
    // select workgroup per top-k block costs ~0.13 ms); a device reporting a
    // tiny per-dimension limit folds every dispatch into 2D instead.
    label:
      "maxComputeWorkgroupsPerDimension = 7: every dispatch folded into 2D",
    sizes: [70001, 4097, 300],
    options: { topkBlockSize: 1000, efBlockSize: 300 },
    gpuDevice: limitedDevice({ maxComputeWorkgroupsPerDimension: 7 }),
  },
  {
    label:
      "maxBindingBytes 4096, density 1, m = 4: the window, not the params, limits the chunk size",
    sizes: [3001, 17],
    options: {
      topkBlockSize: 8,
      density: 1,
      window: 4,
      maxBindingBytes: 4096,
      gatherBelow: 0,
    },
    check: (opt) => {
      const plan = planOf(opt);
      // 16 B of window per element: chunks of at most 4064 / 16 elements.
      assert.ok(groupsOfTensor(plan, 0) >= Math.ceil(3001 / 254));
    },
  },
  {
    label: "Q = 6: ~680 EF blocks per top-k block (global atomics path)",
    sizes: [70001, 4097, 9],
    options: { efBlockSize: 6 },
  },
  {
    label: "D = 65536: block-local indices up to 0xffff",
    sizes: [70001, 65536],
    options: { topkBlockSize: 65536, density: 0.002 },
  },
  {
    label: "m = 1, density 1: everything selected, EF stays zero",
    sizes: [1000, 7],
    options: { window: 1, density: 1 },
  },
  {
    label:
      "a device without subgroups: one-pass and general kernels reduce in workgroup memory",
    sizes: [70001, 8192, 4096, 999],
    options: { weightDecay: 0.02 },
    check: (opt) => assert.equal(hasSubgroups(opt.device), false),
    gpuDevice: plainDevice,
  },
  {
    label:
      "m · k = 512 (m = 8, k = 64): the largest window the one-pass update holds",
    sizes: [8192, 4096, 100],
    options: { window: 8, density: 64 / 4096 },
    check: (opt) => assert.ok(opt.geometry.every(fastPath)),
  },
  {
    label: "D = 3, Q = 2, density 0.5, m = 2 on tiny tensors",
    sizes: [1, 2, 3, 999],
    options: { topkBlockSize: 3, efBlockSize: 2, density: 0.5, window: 2 },
  },
];

for (const dtype of ["f32", "bf16"] as const) {
  Deno.test(`edge configurations, ${dtype}: == CPU`, async () => {
    for (const e of EDGES) {
      const seed = testSeed(`edge ${dtype} ${e.label}`);
      const twin = new Twin({
        dtype,
        sizes: e.sizes,
        seed,
        options: { ...e.options, lr: 1e-2 },
        gpuDevice: e.gpuDevice,
      });
      try {
        e.check?.(twin.gpu);
        for (let s = 1; s <= 4; s++) {
          twin.step();
          await twin.compare(`${e.label}: seed ${seed}, step ${s}`);
        }
        twin.report(`edge ${dtype} ${e.label}`);
      } finally {
        twin.dispose();
      }
    }
  });
}

Deno.test("fastPath: the one-pass kernels take exactly the tensors whose blocks are one EF block and fit their limits", () => {
  const shape = {
    window: 10,
    density: 0.01,
    topkBlockSize: 4096,
    efBlockSize: 4096,
  };
  const g = (d: number, o = {}) => microAdamGeometry(d, { ...shape, ...o });
  assert.equal(fastPath(g(1 << 20)), true); // defaults
  assert.equal(fastPath(g(70001)), true); // a tail block
  assert.equal(fastPath(g(1000, { efBlockSize: 1000 })), true); // one block = one EF block
  assert.equal(fastPath(g(1000, { efBlockSize: 999 })), false); // two EF blocks in it
  assert.equal(fastPath(g(1 << 20, { efBlockSize: 64 })), false); // Q < D
  assert.equal(fastPath(g(1 << 20, { efBlockSize: 8192 })), false); // Q > D: across blocks
  assert.equal(fastPath(g(3, { topkBlockSize: 3, efBlockSize: 3 })), true);
  assert.equal(fastPath(g(30, { topkBlockSize: 3, efBlockSize: 3 })), false); // blocks off code words
  assert.equal(
    fastPath(g(1 << 20, { topkBlockSize: 8192, efBlockSize: 8192 })),
    false,
  );
  assert.equal(fastPath(g(1 << 20, { window: 8, density: 64 / 4096 })), true); // 512 entries
  assert.equal(fastPath(g(1 << 20, { window: 8, density: 65 / 4096 })), false); // 520
  assert.equal(fastPath(g(1 << 20, { window: 17, density: 1 / 4096 })), false); // m > 16
});

// ---- 4. Many small tensors; tensors sharing a buffer ---------------------

for (const dtype of ["f32", "bf16"] as const) {
  Deno.test(`gather: 500 tensors of 1..300 elements in their own buffers, ${dtype}, == CPU`, async () => {
    const seed = testSeed(`500 biases ${dtype}`);
    const r = rng(seed ^ 0x5bd1e995);
    const sizes = Array.from({ length: 500 }, () => 1 + Math.floor(r() * 300));
    const twin = new Twin({
      dtype,
      sizes,
      seed,
      options: { density: 0.05, window: 5 },
    });
    try {
      const plan = planOf(twin.gpu);
      console.log(
        `${dtype}: 500 tensors (${
          sizes.reduce((a, b) => a + b)
        } elements) -> ${plan.batches.length} batch(es)`,
      );
      assert.ok(plan.batches.length <= 2, `${plan.batches.length} groups`);
      assert.ok(
        plan.batches.every((g) => g.gather),
        "every group is a gather arena",
      );
      for (let s = 1; s <= 8; s++) {
        twin.step();
        if (s === 1 || s === 8) await twin.compare(`seed ${seed}, step ${s}`);
      }
      twin.report(`500 biases ${dtype}`);
    } finally {
      twin.dispose();
    }
  });

  Deno.test(`shared buffer: tensors at offsets of one param/grad buffer, ${dtype}, batched natively, == CPU`, async () => {
    const seed = testSeed(`shared ${dtype}`);
    const sizes = [37, 1000, 5, 4097, 2, 300, 70001, 1];
    const twin = new Twin({ dtype, sizes, seed, layout: "shared" });
    try {
      const plan = planOf(twin.gpu);
      assert.equal(plan.batches.length, 1, "one batch");
      assert.equal(plan.batches[0].segments.length, sizes.length);
      assert.equal(plan.batches[0].gather, undefined, "not gathered");
      if (dtype === "bf16") {
        assert.ok(twin.gpuTensors.every((t) => (t.offset ?? 0) % 2 === 0));
      }
      for (let s = 1; s <= 10; s++) {
        twin.step();
        if (s === 1 || s === 10) await twin.compare(`seed ${seed}, step ${s}`);
      }
      await twin.assertGapsUntouched(`seed ${seed}`);
      twin.report(`shared ${dtype}`);
    } finally {
      twin.dispose();
    }
  });
}

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

// ---- 8. Memory -----------------------------------------------------------

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
