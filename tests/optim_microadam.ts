/**
 * What the optim_microadam_*_test.ts files share: a GPU MicroAdam and its
 * exact CPU twin (MicroAdamCpu) over the same tensors and gradients
 * ({@link Twin}), with the comparisons that say what must be bit-identical.
 *
 * The selection path (error feedback, top-k, EF statistics and codes) is
 * computed with exact integer arithmetic in the kernels, so the window, codes
 * and stats buffers must equal the CPU's byte for byte. The f32 update uses
 * the device's sqrt and division, so f32 parameters may differ by a few ulps
 * (tolerance: relative error 1e-5 per tensor); bf16 parameters are demanded
 * within one bf16 ulp on at least 99.9 % of coordinates.
 *
 * Randomized tests print their seed; replay one with MICROADAM_SEED=<seed>.
 */

import assert from "node:assert/strict";
import { MicroAdam } from "../src/optim/microadam.ts";
import type { Adam } from "../src/optim/adam.ts";
import type { PlacementOptions } from "../src/optim/gpu_optimizer.ts";
import type { DType, MicroAdamOptions } from "../src/core/options.ts";
import type { Schedule } from "../src/core/schedule.ts";
import { MicroAdamCpu } from "../src/reference/microadam.ts";
import type { CpuTensor } from "../src/reference/cpu_optimizer.ts";
import type { GpuTensor } from "../src/gpu/tensors.ts";
import type { Plan } from "../src/gpu/plan.ts";
import { readRanges } from "../src/gpu/buffers.ts";
import { NonFiniteGradientError } from "../src/errors.ts";
import { requestDevice } from "../src/gpu/device.ts";
import {
  bufferFrom,
  compareBf16,
  compareF32,
  randomBf16,
  randomF32,
  rng,
  stateDifference,
  testDevice,
  writeTo,
} from "./gpu_util.ts";

export const device = await testDevice();
// The same adapter without the `subgroups` feature: the kernels' reductions
// in workgroup memory only.
export const plainDevice = await requestDevice({ subgroups: false });

/**
 * The test device, reporting some limits lower than it has (the optimizer
 * reads its limits from `device.limits`); every call goes to the real device.
 */
export function limitedDevice(overrides: Record<string, number>): GPUDevice {
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

export type Arr = Float32Array | Uint16Array;

/** The planner's output, for assertions on batching and splitting. */
export function planOf(opt: MicroAdam | Adam): Plan {
  return (opt as unknown as { plan: Plan }).plan;
}

/** Dispatch groups holding a segment of tensor `i`. */
export function groupsOfTensor(plan: Plan, i: number): number {
  return plan.batches.filter((g) => g.segments.some((s) => s.tensor === i))
    .length;
}

/** f32 sentinel for the gaps between tensors sharing a buffer. */
export const SENTINEL_F32 = 1234.5;
/** bf16 sentinel (bits of 1232.0). */
export const SENTINEL_BF16 = 0x449a;

export interface GroupSpec {
  sizes: number[];
  lr?: number;
  weightDecay?: number;
  schedule?: Schedule;
}

export interface TwinSpec {
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

export interface Worst {
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
export class Twin {
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
export function norm(x: Float32Array): number {
  let s = 0;
  for (let j = 0; j < x.length; j++) s += x[j] * x[j];
  return Math.sqrt(s);
}

/** ‖a − b‖ (in f64). */
export function distance(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let j = 0; j < a.length; j++) s += (a[j] - b[j]) ** 2;
  return Math.sqrt(s);
}

/** p − p0, rounded to f32. */
export function displacement(p: Float32Array, p0: Float32Array): Float32Array {
  const out = new Float32Array(p.length);
  for (let j = 0; j < p.length; j++) out[j] = p[j] - p0[j];
  return out;
}

export const SIZES = [1, 7, 1000, 4097, 70001];
export const STRADDLE = { topkBlockSize: 1000, efBlockSize: 300 } as const;
