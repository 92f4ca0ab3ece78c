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

import { powF32 } from "../numeric/f32.ts";
import {
  QuantizedErrorFeedback,
  resolveQuantizerSpec,
} from "./error_feedback.ts";
import type { ParamGroupSpec } from "../core/groups.ts";
import { checkKeys } from "../core/checks.ts";
import { COMMON_KEYS, resolveMicroAdamOptions } from "../core/options.ts";
import type { CheckedNonFinitePolicy, CommonOptions } from "../core/options.ts";
import type { ConfigValue, OptimizerState } from "../core/state.ts";
import { checkF32Buffer, checkF32Ranges } from "../core/state_checks.ts";
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
  /**
   * On a non-finite gradient: `"skip"` or `"error"`, as MicroAdam (which has
   * no `"unchecked"`: it checks inside its first kernel at no extra cost).
   * @default {"skip"}
   */
  nonFinite?: CheckedNonFinitePolicy;
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
  nonFinite: CheckedNonFinitePolicy;
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
    checkF32Ranges(state, "stats");
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
    const spec = resolveQuantizerSpec({ bits: 4, bucketSize: o.efBlockSize });
    const consts = theoryConstants(o, 1, 1);
    for (const { index, tensor, lr, weightDecay: wd } of tensors) {
      const s = this.state[index];
      const g = tensor.grad as Float32Array;
      const ef = new QuantizedErrorFeedback(spec, s);
      // c = g + e, then a = top-k(c) and the residual c − a (kept in `c`).
      const c = ef.addTo(g.slice());
      const a = compressTopk(c, Math.ceil(c.length * o.density));
      ef.store(c);
      theoryUpdate(
        tensor.param as Float32Array,
        a,
        s as Record<string, Float32Array>,
        consts,
        lr,
        wd,
      );
    }
  }
}

/**
 * The f32 constants of one theory-variant step. `bc1` and `bc2` are the bias
 * corrections `1 − β^t` (1 when the variant does not correct, as in §C).
 *
 * @example
 * ```ts
 * import { theoryConstants } from "./microadam_theory.ts";
 * console.log(theoryConstants({ betas: [0.5, 0.75], eps: 0 }, 1, 1).omb1); // 0.5
 * ```
 */
export interface TheoryConstants {
  /** β1 as f32. */
  b1: number;
  /** β2 as f32. */
  b2: number;
  /** f32(1 − β1). */
  omb1: number;
  /** f32(1 − β2). */
  omb2: number;
  /** ε as f32 (added to v̂ under the square root). */
  eps: number;
  /** First-moment bias correction `1 − β1^t`, or 1. */
  bc1: number;
  /** Second-moment bias correction `1 − β2^t`, or 1. */
  bc2: number;
}

/**
 * {@link TheoryConstants} from the betas and ε; `bc1`/`bc2` as given.
 *
 * @example
 * ```ts
 * import { theoryBiasCorrections, theoryConstants } from "./microadam_theory.ts";
 * const [bc1, bc2] = theoryBiasCorrections([0.9, 0.999], 1);
 * console.log(theoryConstants({ betas: [0.9, 0.999], eps: 1e-8 }, bc1, bc2).bc1 === Math.fround(1 - Math.fround(0.9))); // true
 * ```
 */
export function theoryConstants(
  o: { betas: readonly [number, number]; eps: number },
  bc1: number,
  bc2: number,
): TheoryConstants {
  const b1 = fr(o.betas[0]);
  const b2 = fr(o.betas[1]);
  return {
    b1,
    b2,
    omb1: fr(1 - b1),
    omb2: fr(1 - b2),
    eps: fr(o.eps),
    bc1,
    bc2,
  };
}

/**
 * Adam's bias corrections `[f32(1 − β1^t), f32(1 − β2^t)]` (powers by
 * `powF32`), for variants of §C that correct.
 *
 * @example
 * ```ts
 * import { theoryBiasCorrections } from "./microadam_theory.ts";
 * console.log(theoryBiasCorrections([0.5, 0.5], 2)); // [ 0.75, 0.75 ]
 * ```
 */
export function theoryBiasCorrections(
  betas: readonly [number, number],
  t: number,
): [number, number] {
  return [
    fr(1 - powF32(fr(betas[0]), t)),
    fr(1 - powF32(fr(betas[1]), t)),
  ];
}

/**
 * The global top-k compressor `C` of §C: moves the `k` entries of largest
 * magnitude of `c` (ties to the lower index) into a new array and zeroes them
 * in `c`, which is left holding the residual `c − C(c)`.
 *
 * @returns `C(c)`, dense.
 *
 * @example
 * ```ts
 * import { compressTopk } from "./microadam_theory.ts";
 * const c = new Float32Array([0.5, -2, 1]);
 * console.log(Array.from(compressTopk(c, 1)), Array.from(c)); // [ 0, -2, 0 ] [ 0.5, 0, 1 ]
 * ```
 */
export function compressTopk(c: Float32Array, k: number): Float32Array {
  const a = new Float32Array(c.length);
  for (const j of topkBlock(c, k)) {
    a[j] = c[j];
    c[j] = 0;
  }
  return a;
}

/**
 * The dense-moment update of §C for one tensor, in f32:
 * `m = β1·m + (1 − β1)·a`, `v = β2·v + (1 − β2)·a²`, `v̂ = max(v̂, v)` when the
 * state has `maxExpAvgSq` (else `v̂ = v`), then
 * `θ = θ·(1 − lr·wd) − lr·(m/bc1) / sqrt(v̂/bc2 + ε)` (the divisions by the
 * bias corrections only when they are not 1).
 *
 * @example
 * ```ts
 * import { theoryConstants, theoryUpdate } from "./microadam_theory.ts";
 * const p = new Float32Array([1]);
 * const s = { expAvg: new Float32Array(1), expAvgSq: new Float32Array(1) };
 * theoryUpdate(p, new Float32Array([2]), s, theoryConstants({ betas: [0, 0], eps: 0 }, 1, 1), 0.5, 0);
 * console.log(p[0]); // 0.5
 * ```
 */
export function theoryUpdate(
  p: Float32Array,
  a: Float32Array,
  s: Record<string, Float32Array>,
  k: TheoryConstants,
  lr: number,
  wd: number,
): void {
  const m = s.expAvg;
  const v = s.expAvgSq;
  const vh = s.maxExpAvgSq as Float32Array | undefined;
  const { b1, b2, omb1, omb2, eps, bc1, bc2 } = k;
  const corrected = bc1 !== 1 || bc2 !== 1;
  const decay = wd > 0 ? fr(1 - lr * wd) : 1;
  const lrF = fr(lr);
  for (let j = 0; j < p.length; j++) {
    const aj = a[j];
    const mj = fr(fr(b1 * m[j]) + fr(omb1 * aj));
    const vj = fr(fr(b2 * v[j]) + fr(fr(omb2 * aj) * aj));
    m[j] = mj;
    v[j] = vj;
    let vmax = vj;
    if (vh) {
      vmax = Math.max(vh[j], vj);
      vh[j] = vmax;
    }
    const pj = decay !== 1 ? fr(p[j] * decay) : p[j];
    if (corrected) {
      const den = fr(Math.sqrt(fr(fr(vmax / bc2) + eps)));
      p[j] = fr(pj - fr(lrF * fr(fr(mj / bc1) / den)));
    } else {
      const den = fr(Math.sqrt(fr(vmax + eps)));
      p[j] = fr(pj - fr(lrF * fr(mj / den)));
    }
  }
}
