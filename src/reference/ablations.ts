/**
 * Ablations of the two MicroAdam references, for the convergence experiments
 * (`docs/experiments.md`): the same pieces as `MicroAdamCpu` and
 * `MicroAdamTheoryCpu` (exported by `microadam.ts`, `microadam_theory.ts`
 * and `error_feedback.ts`), composed with one part swapped.
 *
 * - {@link MicroAdamAblationCpu}: MicroAdam as shipped (window of sparse
 *   gradients), with another error feedback (none, or a quantizer of any bit
 *   width, bucket size and rounding) and optionally a running maximum of the
 *   window's second moment ("µA+max"). With `density: 1` and
 *   `errorFeedback: "none"` it is a dense windowed Adam ("W").
 * - {@link MicroAdamTheoryAblationCpu}: the theory variant (spec §C) with
 *   another error feedback, without the AMSGrad maximum, or with Adam's bias
 *   correction ("TopK-Adam" is `{ errorFeedback: "none", amsgradMax: false,
 *   biasCorrection: true }`).
 *
 * With no ablation option set, each is bit for bit its reference
 * (`tests/ablations_test.ts`). Both accept an `observer` that sees, at every
 * step, what the compressor was given, what it left out and what the error
 * feedback kept, so the experiments can measure the top-k contraction `q`
 * and the quantizer error `ω` (`src/experiments/compression.ts`).
 *
 * These options are CPU-only and live here, not in `core/options.ts`, which
 * the GPU optimizers share. The stochastic rounding's generator is not part
 * of a state dict.
 *
 * @module
 */

import { CheckpointError, describe, InvalidOptionError } from "../errors.ts";
import type { ParamGroupSpec } from "../core/groups.ts";
import { microAdamGeometry } from "../core/geometry.ts";
import {
  checkBf16Stats,
  checkF32Buffer,
  checkF32Ranges,
  checkMicroAdamWindow,
} from "../core/state_checks.ts";
import { checkBoolean, checkKeys, given } from "../core/checks.ts";
import type { MicroAdamGeometry } from "../core/geometry.ts";
import {
  COMMON_KEYS,
  MICROADAM_KEYS,
  microAdamStateConfig,
  resolveMicroAdamOptions,
} from "../core/options.ts";
import type {
  MicroAdamOptions,
  ResolvedMicroAdamOptions,
} from "../core/options.ts";
import type { ConfigValue, OptimizerState } from "../core/state.ts";
import { CpuOptimizer } from "./cpu_optimizer.ts";
import type { CpuTensor, TensorStepInput } from "./cpu_optimizer.ts";
import {
  errorFeedbackState,
  QuantizedErrorFeedback,
  resolveQuantizerSpec,
} from "./error_feedback.ts";
import type { QuantizerSpec, ResolvedQuantizerSpec } from "./error_feedback.ts";
import {
  addErrorFeedback,
  applyUpdate,
  applyWeightDecay,
  selectIntoWindow,
  stepConstants,
  storeErrorFeedback,
  windowMoments,
} from "./microadam.ts";
import {
  compressTopk,
  resolveMicroAdamTheoryOptions,
  theoryBiasCorrections,
  theoryConstants,
  theoryUpdate,
} from "./microadam_theory.ts";
import type {
  MicroAdamTheoryOptions,
  ResolvedMicroAdamTheoryOptions,
} from "./microadam_theory.ts";

const identity = (x: number) => x;

/**
 * What an ablation's compressor saw at one step of one tensor (fresh arrays,
 * the observer may keep them).
 *
 * @example
 * ```ts
 * import type { CompressionObservation } from "./ablations.ts";
 * const o: CompressionObservation = {
 *   tensor: 0, step: 1,
 *   input: new Float32Array([2, 1]), residual: new Float32Array([0, 1]), stored: new Float32Array([0, 1]),
 * };
 * console.log(o.residual[1]); // 1
 * ```
 */
export interface CompressionObservation {
  /** Flat index of the tensor. */
  tensor: number;
  /** Applied step `t` (1-based). */
  step: number;
  /** What top-k was given: the gradient plus the stored error, `x = g + e`. */
  input: Float32Array;
  /** What top-k left out: `x − C(x)`. */
  residual: Float32Array;
  /** What the error feedback kept of it, `Q(x − C(x))` (zeros without error feedback). */
  stored: Float32Array;
}

/** Called once per tensor and applied step. */
export type CompressionObserver = (o: CompressionObservation) => void;

/**
 * Options of {@link MicroAdamAblationCpu}: MicroAdam's, plus the ablations.
 *
 * @example
 * ```ts
 * import type { MicroAdamAblationOptions } from "./ablations.ts";
 * const topkNoEf: MicroAdamAblationOptions = { lr: 1e-3, errorFeedback: "none" };
 * const muMax: MicroAdamAblationOptions = { lr: 1e-3, windowMax: true };
 * console.log(topkNoEf.errorFeedback, muMax.windowMax); // none true
 * ```
 */
export interface MicroAdamAblationOptions extends MicroAdamOptions {
  /**
   * `"shipped"`: MicroAdam's own 4-bit error feedback with bf16 statistics
   * (per `efBlockSize`); `"none"`: the residual is dropped; a
   * {@link QuantizerSpec}: that quantizer (f32 statistics).
   * @default {"shipped"}
   */
  errorFeedback?: "shipped" | "none" | QuantizerSpec;
  /**
   * Keep the running maximum of the window's second moment `S` (before bias
   * correction) and divide by it: MicroAdam with AMSGrad's fix.
   * @default {false}
   */
  windowMax?: boolean;
  /** Sees each step's compression (for measuring q and ω). @default {undefined} */
  observer?: CompressionObserver;
}

/**
 * Options of {@link MicroAdamTheoryAblationCpu}: the theory variant's, plus
 * the ablations.
 *
 * @example
 * ```ts
 * import type { MicroAdamTheoryAblationOptions } from "./ablations.ts";
 * const topkAdam: MicroAdamTheoryAblationOptions = {
 *   density: 0.5, errorFeedback: "none", amsgradMax: false, biasCorrection: true,
 * };
 * console.log(topkAdam.biasCorrection); // true
 * ```
 */
export interface MicroAdamTheoryAblationOptions extends MicroAdamTheoryOptions {
  /**
   * `"none"`, or the quantizer of the error feedback.
   * @default {{ bits: 4, bucketSize: efBlockSize, rounding: "nearest" }} (the theory variant's)
   */
  errorFeedback?: "none" | QuantizerSpec;
  /** Keep AMSGrad's running maximum of v. @default {true} */
  amsgradMax?: boolean;
  /** Divide m and v̂ by Adam's bias corrections `1 − β^t`. @default {false} */
  biasCorrection?: boolean;
  /** Sees each step's compression (for measuring q and ω). @default {undefined} */
  observer?: CompressionObserver;
}

/** An optional boolean option (null and non-booleans refused). */
function flag(o: Record<string, unknown>, key: string, fallback: boolean) {
  return checkBoolean(given(o, key, fallback), key);
}

function checkObserver(v: unknown): CompressionObserver | undefined {
  if (v !== undefined && typeof v !== "function") {
    throw new InvalidOptionError(
      `observer: expected a function (observation) => void, got ${describe(v)}`,
    );
  }
  return v as CompressionObserver | undefined;
}

type EfChoice = "shipped" | "none" | ResolvedQuantizerSpec;

function checkErrorFeedback(
  v: unknown,
  allowed: readonly string[],
  fallback: EfChoice,
): EfChoice {
  if (v === undefined) return fallback;
  if (typeof v === "string") {
    if (!allowed.includes(v)) {
      throw new InvalidOptionError(
        `errorFeedback: expected ${
          allowed.map((a) => `"${a}"`).join(", ")
        } or { bits, bucketSize, rounding?, seed? }, got ${describe(v)}`,
      );
    }
    return v as EfChoice;
  }
  return resolveQuantizerSpec(v as QuantizerSpec);
}

function efConfig(ef: EfChoice): string {
  return typeof ef === "string"
    ? ef
    : `${ef.bits}bit/${ef.bucketSize}/${ef.rounding}`;
}

/** Resolved options of {@link MicroAdamAblationCpu}. */
export interface ResolvedMicroAdamAblationOptions
  extends ResolvedMicroAdamOptions {
  /** The error feedback. */
  errorFeedback: EfChoice;
  /** Running maximum of S. */
  windowMax: boolean;
  /** The observer, if any. */
  observer?: CompressionObserver;
}

/**
 * MicroAdam (f32, spec §B) with ablations: another error feedback, and/or the
 * running maximum of the window's second moment. Without ablation options it
 * is `MicroAdamCpu`, bit for bit.
 *
 * @example
 * ```ts
 * import { MicroAdamAblationCpu } from "./ablations.ts";
 * const param = new Float32Array(4);
 * const grad = new Float32Array([0.1, -4, 0.2, 0.3]);
 * const opt = new MicroAdamAblationCpu([{ param, grad }], { lr: 0.1, density: 0.25, window: 2, errorFeedback: "none" });
 * for (let i = 0; i < 5; i++) opt.step();
 * console.log(Array.from(param).map((p) => p.toFixed(3))); // [ "0.000", "0.437", "0.000", "0.000" ] (only the −4 ever moves)
 * ```
 */
export class MicroAdamAblationCpu
  extends CpuOptimizer<ResolvedMicroAdamAblationOptions> {
  /** Per-tensor geometry (blocks, k, window and EF layout). */
  readonly geometry: readonly MicroAdamGeometry[];
  #ring = 0;
  #ef: (QuantizedErrorFeedback | null)[];

  /**
   * Validates the options (MicroAdam's and the ablations') and the tensors,
   * and allocates zeroed state.
   *
   * @param params Tensors (f32) or groups of tensors.
   * @param options MicroAdam options plus ablations.
   * @throws {InvalidOptionError} naming the option and the bad value.
   */
  constructor(
    params: readonly (CpuTensor | ParamGroupSpec<CpuTensor>)[],
    options: MicroAdamAblationOptions = {},
  ) {
    const what = "MicroAdamAblationCpu options";
    const all = checkKeys(options, [
      ...MICROADAM_KEYS,
      "errorFeedback",
      "windowMax",
      "observer",
    ], what);
    const { errorFeedback, windowMax: _w, observer, ...base } = all;
    const r = resolveMicroAdamOptions(base, [], what);
    if (r.dtype !== "f32") {
      throw new InvalidOptionError(
        `dtype: MicroAdamAblationCpu runs in f32 only, got ${
          describe(r.dtype)
        }`,
      );
    }
    const o: ResolvedMicroAdamAblationOptions = {
      ...r,
      errorFeedback: checkErrorFeedback(
        errorFeedback,
        ["shipped", "none"],
        "shipped",
      ),
      windowMax: flag(all, "windowMax", false),
      observer: checkObserver(observer),
    };
    super("MicroAdamAblation", params, o, "f32");
    this.geometry = this.lengths.map((d) => microAdamGeometry(d, o));
    const ef = o.errorFeedback;
    const states = this.geometry.map((g) => {
      const s: Record<string, Float32Array | Uint32Array> = {
        window: new Uint32Array(g.windowEntries),
      };
      if (ef === "shipped") {
        s.codes = new Uint32Array(g.codeWords);
        s.stats = new Uint32Array(g.efBlocks);
      } else if (ef !== "none") {
        Object.assign(s, errorFeedbackState(g.length, ef));
      }
      if (o.windowMax) s.maxWindowSq = new Float32Array(g.length);
      return s;
    });
    this.initState(states);
    this.#ef = states.map((s, i) =>
      typeof ef === "string"
        ? null
        : new QuantizedErrorFeedback({ ...ef, seed: ef.seed + i }, s)
    );
  }

  /** Every option that shapes the state. */
  protected stateConfig(): Record<string, ConfigValue> {
    return {
      ...microAdamStateConfig(this.options),
      errorFeedback: efConfig(this.options.errorFeedback),
      windowMax: this.options.windowMax,
    };
  }

  /** Window slot the next applied step writes. */
  protected override get ring(): number {
    return this.#ring;
  }

  protected override set ring(r: number) {
    this.#ring = r;
  }

  /** Ring position and window indices, as for MicroAdam. */
  protected override validateState(s: OptimizerState): void {
    checkMicroAdamWindow(s, this.geometry);
    const ef = this.options.errorFeedback;
    if (ef === "shipped") checkBf16Stats(s);
    else if (ef !== "none") checkF32Ranges(s, "stats");
    if (this.options.windowMax) checkF32Buffer(s, "maxWindowSq", true);
  }

  /** MicroAdam's steps 1–9 with the ablated parts swapped in. */
  protected applyStep(t: number, tensors: TensorStepInput[]): void {
    const o = this.options;
    const k = stepConstants(o, t, this.#ring);
    for (const x of tensors) {
      const g = this.geometry[x.index];
      const s = this.state[x.index];
      const grad = x.tensor.grad as Float32Array;
      const p = x.tensor.param as Float32Array;
      const ef = this.#ef[x.index];
      const shipped = s as Record<string, Uint32Array>;
      const a = o.errorFeedback === "shipped"
        ? addErrorFeedback(g, shipped, grad, identity)
        : ef
        ? ef.addTo(grad.slice())
        : grad.slice();
      const input = o.observer ? a.slice() : undefined;
      selectIntoWindow(g, s.window as Uint32Array, a, this.#ring);
      if (o.errorFeedback === "shipped") storeErrorFeedback(g, shipped, a);
      else ef?.store(a);
      if (input) {
        const stored = o.errorFeedback === "shipped"
          ? addErrorFeedback(g, shipped, new Float32Array(g.length), identity)
          : ef
          ? ef.values(g.length)
          : new Float32Array(g.length);
        o.observer!({
          tensor: x.index,
          step: t,
          input,
          residual: a.slice(),
          stored,
        });
      }
      applyWeightDecay(p, x.lr, x.weightDecay, identity);
      const { M, S } = windowMoments(g, s.window as Uint32Array, k);
      if (o.windowMax) {
        const sh = s.maxWindowSq as Float32Array;
        for (let j = 0; j < S.length; j++) {
          if (S[j] > sh[j]) sh[j] = S[j];
          else S[j] = sh[j];
        }
      }
      applyUpdate(p, M, S, k, x.lr, identity);
    }
    this.#ring = (this.#ring + 1) % o.window;
  }
}

/** Resolved options of {@link MicroAdamTheoryAblationCpu}. */
export interface ResolvedMicroAdamTheoryAblationOptions
  extends ResolvedMicroAdamTheoryOptions {
  /** The error feedback. */
  errorFeedback: "none" | ResolvedQuantizerSpec;
  /** AMSGrad maximum. */
  amsgradMax: boolean;
  /** Adam's bias correction. */
  biasCorrection: boolean;
  /** The observer, if any. */
  observer?: CompressionObserver;
}

/**
 * The theory variant (spec §C) with ablations: another error feedback, no
 * AMSGrad maximum, Adam's bias correction. Without ablation options it is
 * `MicroAdamTheoryCpu`, bit for bit.
 *
 * @example
 * ```ts
 * import { MicroAdamTheoryAblationCpu } from "./ablations.ts";
 * const param = new Float32Array(2);
 * const grad = new Float32Array([1, 0.5]);
 * const opt = new MicroAdamTheoryAblationCpu([{ param, grad }], {
 *   lr: 0.1, density: 0.5, errorFeedback: "none", amsgradMax: false, biasCorrection: true,
 * });
 * for (let i = 0; i < 3; i++) opt.step(); // top-1 without error feedback: the 0.5 is never applied
 * console.log(param[1], param[0] < -0.29); // 0 true
 * ```
 */
export class MicroAdamTheoryAblationCpu
  extends CpuOptimizer<ResolvedMicroAdamTheoryAblationOptions> {
  #ef: (QuantizedErrorFeedback | null)[];

  /**
   * Validates the options (the theory variant's and the ablations') and the
   * tensors, and allocates zeroed state.
   *
   * @param params Tensors (f32) or groups of tensors.
   * @param options Theory-variant options plus ablations.
   * @throws {InvalidOptionError} naming the option and the bad value.
   */
  constructor(
    params: readonly (CpuTensor | ParamGroupSpec<CpuTensor>)[],
    options: MicroAdamTheoryAblationOptions = {},
  ) {
    const all = checkKeys(options, [
      ...COMMON_KEYS,
      "density",
      "efBlockSize",
      "errorFeedback",
      "amsgradMax",
      "biasCorrection",
      "observer",
    ], "MicroAdamTheoryAblationCpu options");
    const {
      errorFeedback,
      amsgradMax: _a,
      biasCorrection: _b,
      observer,
      ...base
    } = all;
    const r = resolveMicroAdamTheoryOptions(base);
    const o: ResolvedMicroAdamTheoryAblationOptions = {
      ...r,
      errorFeedback: checkErrorFeedback(
        errorFeedback,
        ["none"],
        resolveQuantizerSpec({ bits: 4, bucketSize: r.efBlockSize }),
      ) as "none" | ResolvedQuantizerSpec,
      amsgradMax: flag(all, "amsgradMax", true),
      biasCorrection: flag(all, "biasCorrection", false),
      observer: checkObserver(observer),
    };
    super("MicroAdamTheoryAblation", params, o, "f32");
    const ef = o.errorFeedback;
    const states = this.lengths.map((d) => {
      const s: Record<string, Float32Array | Uint32Array> = ef === "none"
        ? {}
        : errorFeedbackState(d, ef);
      s.expAvg = new Float32Array(d);
      s.expAvgSq = new Float32Array(d);
      if (o.amsgradMax) s.maxExpAvgSq = new Float32Array(d);
      return s;
    });
    this.initState(states);
    this.#ef = states.map((s, i) =>
      ef === "none" ? null : new QuantizedErrorFeedback(
        { ...ef, seed: ef.seed + i },
        s,
      )
    );
  }

  /**
   * Finite moments, second moments (and their maximum) ≥ 0, EF ranges with
   * min ≤ max, ring 0: what a step can produce.
   */
  protected override validateState(state: OptimizerState): void {
    if (state.ring !== 0) {
      throw new CheckpointError(
        `ring: expected 0 (this optimizer keeps no window), got ${state.ring}`,
      );
    }
    checkF32Buffer(state, "expAvg");
    checkF32Buffer(state, "expAvgSq", true);
    if (this.options.amsgradMax) checkF32Buffer(state, "maxExpAvgSq", true);
    if (this.options.errorFeedback !== "none") checkF32Ranges(state, "stats");
  }

  /** Options that shape the state. */
  protected stateConfig(): Record<string, ConfigValue> {
    return {
      density: this.options.density,
      efBlockSize: this.options.efBlockSize,
      errorFeedback: efConfig(this.options.errorFeedback),
      amsgradMax: this.options.amsgradMax,
      biasCorrection: this.options.biasCorrection,
    };
  }

  /** One step of §C over every tensor, with the ablated parts swapped in. */
  protected applyStep(t: number, tensors: TensorStepInput[]): void {
    const o = this.options;
    const [bc1, bc2] = o.biasCorrection
      ? theoryBiasCorrections(o.betas, t)
      : [1, 1];
    const consts = theoryConstants(o, bc1, bc2);
    for (const { index, tensor, lr, weightDecay: wd } of tensors) {
      const s = this.state[index];
      const ef = this.#ef[index];
      const g = tensor.grad as Float32Array;
      const c = ef ? ef.addTo(g.slice()) : g.slice();
      const input = o.observer ? c.slice() : undefined;
      const a = compressTopk(c, Math.ceil(c.length * o.density));
      ef?.store(c);
      if (input) {
        o.observer!({
          tensor: index,
          step: t,
          input,
          residual: c.slice(),
          stored: ef ? ef.values(c.length) : new Float32Array(c.length),
        });
      }
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
