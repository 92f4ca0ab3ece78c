/**
 * The MicroAdam variant the paper's convergence proof is about (docs/algorithm.md §C), on
 * the CPU in f32:
 *
 * ```
 * c = g + e                       e dequantized from 4-bit codes
 * a = C(c)                        global top-k of |c| per tensor, k = ceil(d·density)
 * e ← Q(c − a)                    4-bit nearest quantizer, min/max per block of efBlockSize
 * if wd > 0: θ = θ·(1 − lr·wd)    decoupled weight decay
 * m = β1·m + (1 − β1)·a
 * v = β2·v + (1 − β2)·a²
 * v̂ = max(v̂, v)                   AMSGrad maximum
 * θ = θ − lr·m / sqrt(v̂ + ε)      no bias correction
 * ```
 *
 * Every operation is rounded to f32. State buffers per tensor: `codes` (u32
 * words, eight 4-bit codes each), `stats` (f32 pairs `[min, max]` per EF
 * block: kept in f32 because this variant is about the theory, not memory),
 * `expAvg`, `expAvgSq`, `maxExpAvgSq` (f32). Top-k ties go to the lower index.
 *
 * @module
 */

import { fmaF32 } from "../numeric/f32.ts";
import { getCode, setCode } from "../numeric/pack.ts";
import type { ParamGroupSpec } from "../core/groups.ts";
import { checkKeys } from "../core/checks.ts";
import { COMMON_KEYS, resolveMicroAdamOptions } from "../core/options.ts";
import type { CommonOptions } from "../core/options.ts";
import type { ConfigValue, OptimizerState } from "../core/state.ts";
import { checkF32Buffer } from "../core/state_checks.ts";
import { CheckpointError } from "../errors.ts";
import type { Schedule } from "../core/schedule.ts";
import { CpuOptimizer } from "./cpu_optimizer.ts";
import type { CpuTensor, TensorStepInput } from "./cpu_optimizer.ts";
import { topkBlock } from "./microadam.ts";

const fr = Math.fround;

/**
 * Options of {@link MicroAdamTheoryCpu}.
 *
 * @example
 * ```ts
 * import type { MicroAdamTheoryOptions } from "./microadam_theory.ts";
 * const o: MicroAdamTheoryOptions = { lr: 1e-3, density: 0.05, efBlockSize: 64 };
 * console.log(o.density); // 0.05
 * ```
 */
export interface MicroAdamTheoryOptions extends CommonOptions {
  /** Fraction of each tensor kept by the global top-k, in (0, 1]. @default {0.01} */
  density?: number;
  /** Error-feedback quantization block size (even, ≥ 2). @default {4096} */
  efBlockSize?: number;
}

/**
 * {@link MicroAdamTheoryOptions} with every default filled in.
 *
 * @example
 * ```ts
 * import { resolveMicroAdamTheoryOptions } from "./microadam_theory.ts";
 * import type { ResolvedMicroAdamTheoryOptions } from "./microadam_theory.ts";
 * const o: ResolvedMicroAdamTheoryOptions = resolveMicroAdamTheoryOptions();
 * console.log(o.density, o.betas); // 0.01 [ 0.9, 0.999 ]
 * ```
 */
export interface ResolvedMicroAdamTheoryOptions {
  /** Base learning rate. */
  lr: number;
  /** Moment decay rates. */
  betas: readonly [number, number];
  /** Added to v̂ under the square root. */
  eps: number;
  /** Decoupled weight decay. */
  weightDecay: number;
  /** Schedule, or undefined for a constant lr. */
  schedule?: Schedule;
  /** Non-finite gradient policy. */
  nonFinite: "skip" | "error";
  /** Top-k density. */
  density: number;
  /** EF quantization block size. */
  efBlockSize: number;
}

/**
 * Validates theory-variant options (the same rules and messages as
 * MicroAdam's) and fills in defaults.
 *
 * @example
 * ```ts
 * import { resolveMicroAdamTheoryOptions } from "./microadam_theory.ts";
 * console.log(resolveMicroAdamTheoryOptions({ density: 0.1 }).efBlockSize); // 4096
 * ```
 */
export function resolveMicroAdamTheoryOptions(
  options: MicroAdamTheoryOptions = {},
): ResolvedMicroAdamTheoryOptions {
  const what = "MicroAdamTheory options";
  const o = checkKeys(
    options,
    [...COMMON_KEYS, "density", "efBlockSize"],
    what,
  ) as MicroAdamTheoryOptions;
  const r = resolveMicroAdamOptions(
    {
      lr: o.lr,
      betas: o.betas,
      eps: o.eps,
      weightDecay: o.weightDecay,
      schedule: o.schedule,
      nonFinite: o.nonFinite,
      density: o.density,
      efBlockSize: o.efBlockSize,
    },
    [],
    what,
  );
  return {
    lr: r.lr,
    betas: r.betas,
    eps: r.eps,
    weightDecay: r.weightDecay,
    schedule: r.schedule,
    nonFinite: r.nonFinite,
    density: r.density,
    efBlockSize: r.efBlockSize,
  };
}

/**
 * MicroAdam as analysed in the paper (docs/algorithm.md §C): global top-k with 4-bit
 * error feedback, dense EMAs, AMSGrad maximum, no bias correction.
 * Parameters and gradients are `Float32Array`s.
 *
 * @example
 * ```ts
 * import { MicroAdamTheoryCpu } from "./microadam_theory.ts";
 * const param = new Float32Array([0, 0]);
 * const opt = new MicroAdamTheoryCpu([{ param, grad: new Float32Array([1, 0.5]) }], { lr: 0.1, density: 0.5 });
 * opt.step(); // only the 1 is applied; 0.5 waits in the error feedback
 * console.log(param[1], param[0] < 0); // 0 true
 * ```
 */
export class MicroAdamTheoryCpu
  extends CpuOptimizer<ResolvedMicroAdamTheoryOptions> {
  /**
   * Validates the options and tensors and allocates zeroed state.
   *
   * @param params Tensors (f32) or groups of tensors.
   * @param options Theory-variant options.
   */
  constructor(
    params: readonly (CpuTensor | ParamGroupSpec<CpuTensor>)[],
    options: MicroAdamTheoryOptions = {},
  ) {
    const o = resolveMicroAdamTheoryOptions(options);
    super("MicroAdamTheory", params, o, "f32");
    this.initState(this.lengths.map((d) => ({
      codes: new Uint32Array(Math.ceil(d / 8)),
      stats: new Float32Array(2 * (Math.floor(d / o.efBlockSize) + 1)),
      expAvg: new Float32Array(d),
      expAvgSq: new Float32Array(d),
      maxExpAvgSq: new Float32Array(d),
    })));
  }

  /**
   * Finite values, second moments ≥ 0, EF ranges with min ≤ max, ring 0: what
   * a step can produce.
   */
  protected override validateState(state: OptimizerState): void {
    if (state.ring !== 0) {
      throw new CheckpointError(
        `ring: expected 0 (this optimizer keeps no window), got ${state.ring}`,
      );
    }
    checkF32Buffer(state, "expAvg");
    checkF32Buffer(state, "expAvgSq", true);
    checkF32Buffer(state, "maxExpAvgSq", true);
    checkF32Buffer(state, "stats");
    state.tensors.forEach((t, i) => {
      const b = t.buffers.stats;
      const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
      for (let q = 0; 8 * q < b.byteLength; q++) {
        const mn = v.getFloat32(8 * q, true);
        const mx = v.getFloat32(8 * q + 4, true);
        if (mn > mx) {
          throw new CheckpointError(
            `tensor ${i} ("${t.name}"): EF block ${q} has min ${mn} above max ${mx}`,
          );
        }
      }
    });
  }

  /** Options that shape the state. */
  protected stateConfig(): Record<string, ConfigValue> {
    return {
      density: this.options.density,
      efBlockSize: this.options.efBlockSize,
    };
  }

  /** One step of §C over every tensor. */
  protected applyStep(_t: number, tensors: TensorStepInput[]): void {
    const o = this.options;
    const b1 = fr(o.betas[0]);
    const b2 = fr(o.betas[1]);
    const omb1 = fr(1 - b1);
    const omb2 = fr(1 - b2);
    const eps = fr(o.eps);
    const Q = o.efBlockSize;
    for (const { index, tensor, lr, weightDecay: wd } of tensors) {
      const p = tensor.param as Float32Array;
      const g = tensor.grad as Float32Array;
      const s = this.state[index];
      const codes = s.codes as Uint32Array;
      const stats = s.stats as Float32Array;
      const m = s.expAvg as Float32Array;
      const v = s.expAvgSq as Float32Array;
      const vh = s.maxExpAvgSq as Float32Array;
      const d = p.length;

      // c = g + e, then a = top-k(c) and the residual c − a (kept in `c`).
      const c = new Float32Array(d);
      for (let qb = 0, start = 0; start < d; qb++, start += Q) {
        const mn = stats[2 * qb];
        const u = fr(fr(stats[2 * qb + 1] - mn) / 15);
        const end = Math.min(d, start + Q);
        for (let j = start; j < end; j++) {
          c[j] = fr(g[j] + fmaF32(getCode(codes, j), u, mn));
        }
      }
      const a = new Float32Array(d);
      for (const j of topkBlock(c, Math.ceil(d * o.density))) {
        a[j] = c[j];
        c[j] = 0;
      }

      // e ← Q(c − a): nearest 4-bit code between the block's f32 min and max.
      for (let qb = 0, start = 0; start < d; qb++, start += Q) {
        const end = Math.min(d, start + Q);
        let mn = c[start];
        let mx = c[start];
        for (let j = start + 1; j < end; j++) {
          if (c[j] < mn) mn = c[j];
          if (c[j] > mx) mx = c[j];
        }
        stats[2 * qb] = mn + 0; // +0 for −0: canonical state bytes
        stats[2 * qb + 1] = mx + 0;
        const u = fr(fr(mx - mn) / 15);
        for (let j = start; j < end; j++) {
          let q = 0;
          if (u !== 0) {
            q = Math.floor(fr(fr(fr(c[j] - mn) / u) + 0.5));
            q = q < 0 ? 0 : q > 15 ? 15 : q;
          }
          setCode(codes, j, q);
        }
      }

      const decay = wd > 0 ? fr(1 - lr * wd) : 1;
      const lrF = fr(lr);
      for (let j = 0; j < d; j++) {
        const aj = a[j];
        const mj = fr(fr(b1 * m[j]) + fr(omb1 * aj));
        const vj = fr(fr(b2 * v[j]) + fr(fr(omb2 * aj) * aj));
        const vmax = Math.max(vh[j], vj);
        m[j] = mj;
        v[j] = vj;
        vh[j] = vmax;
        const pj = decay !== 1 ? fr(p[j] * decay) : p[j];
        const den = fr(Math.sqrt(fr(vmax + eps)));
        p[j] = fr(pj - fr(lrF * fr(mj / den)));
      }
    }
  }
}
