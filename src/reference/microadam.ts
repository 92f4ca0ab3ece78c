/**
 * MicroAdam on the CPU, exactly as `docs/algorithm.md` describes it:
 * §A (bf16 parameters and gradients, bit-exact with the authors' CUDA code)
 * with `dtype: "bf16"`, §B (f32 parameters and gradients, same compressed
 * state) with `dtype: "f32"`. One implementation serves both: the bf16
 * roundings of `e`, `a`, `u` and `p` are switched by the dtype, everything
 * else is shared.
 *
 * State per tensor (layouts from `numeric/pack.ts` and `core/geometry.ts`):
 * - `window`: u32 entries (block-local index | bf16 value << 16),
 *   block-major: block `b`, slot `s` at `blockWindowOffset(b) + s·k_b`;
 * - `codes`: 4-bit EF codes, eight per u32;
 * - `stats`: one u32 per EF block, bf16 min | bf16 max << 16.
 *
 * EF statistics are stored as bf16 in both modes. In f32 mode the minimum is
 * rounded down and the maximum up (so the stored range covers the block), the
 * quantizer uses exactly those stored values, and codes are also clamped to
 * 0..15. In bf16 mode the data are bf16 already, so that rounding is the
 * identity. A zero minimum or maximum is stored as +0 whatever its sign, so
 * states compare bitwise across implementations.
 *
 * Rounding facts the golden trajectories pin down (each alternative below
 * breaks bit-exactness on `tests/testdata/golden`):
 * - step 9 is one fused multiply-add, `p = bf16(fma(f32(−lr), u, p))` (the
 *   CUDA compiler contracts `p + (−lr)·u`); rounding `(−lr)·u` first differs.
 *   f32 mode uses the same fma, without the bf16 rounding;
 * - `p` is rounded to bf16 after the weight decay, before step 9;
 * - `e` and `u` are rounded to bf16; the quantizer divides by `u_b` (a
 *   multiplication by `1/u_b` differs);
 * - a block's row is written as the entries strictly above the threshold in
 *   ascending index, then threshold ties in ascending index (most recorded
 *   rows are not sorted by index, and all of them match this order).
 *
 * The data do not separate `fma` from multiply-then-add in steps 1 and 7, nor
 * `1 − lr·wd` in f64 from the same in f32; docs/algorithm.md's forms are used.
 *
 * @module
 */

import {
  bf16Bits,
  bf16BitsDown,
  bf16BitsUp,
  bf16ToNumber,
  roundBf16,
} from "../numeric/bf16.ts";
import { biasCorrection, fmaF32, powF32 } from "../numeric/f32.ts";
import { getCode, packEntry, packStats, setCode } from "../numeric/pack.ts";
import {
  blockK,
  blockLength,
  blockWindowOffset,
  microAdamGeometry,
} from "../core/geometry.ts";
import type { MicroAdamGeometry } from "../core/geometry.ts";
import { checkMicroAdamState } from "../core/state_checks.ts";
import type { ParamGroupSpec } from "../core/groups.ts";
import {
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

const fr = Math.fround;
const identity = (x: number) => x;

/**
 * MicroAdam, CPU reference. With `dtype: "bf16"` tensors are `Uint16Array`s
 * of bf16 bits and the result is bit-exact with the authors' CUDA kernels
 * (checked against the golden trajectories); with `dtype: "f32"` (default)
 * they are `Float32Array`s.
 *
 * @example
 * ```ts
 * import { MicroAdamCpu } from "./microadam.ts";
 * const param = new Float32Array([1, 1, 1, 1]);
 * const grad = new Float32Array([0.1, -4, 0.2, 0.3]);
 * const opt = new MicroAdamCpu([{ param, grad }], { lr: 0.1, density: 0.25, window: 2 });
 * opt.step(); // only |−4| is kept this step; the rest goes to the error feedback
 * console.log(Array.from(param)); // [ 1, 1.100000023841858, 1, 1 ]
 * console.log(opt.stateBytes()); // 16 (window 2·1·4 + codes 4 + stats 4·1)
 * ```
 */
export class MicroAdamCpu extends CpuOptimizer<ResolvedMicroAdamOptions> {
  /** Per-tensor geometry (blocks, k, window and EF layout). */
  readonly geometry: readonly MicroAdamGeometry[];
  #ring = 0;

  /**
   * Validates the options and tensors and allocates zeroed state.
   *
   * @param params Tensors or groups of tensors (`Uint16Array` bf16 bits when `dtype` is "bf16").
   * @param options MicroAdam options.
   */
  constructor(
    params: readonly (CpuTensor | ParamGroupSpec<CpuTensor>)[],
    options: MicroAdamOptions = {},
  ) {
    const o = resolveMicroAdamOptions(options, [], "MicroAdamCpu options");
    super("MicroAdam", params, o, o.dtype);
    this.geometry = this.lengths.map((d) => microAdamGeometry(d, o));
    this.initState(this.geometry.map((g) => ({
      window: new Uint32Array(g.windowEntries),
      codes: new Uint32Array(g.codeWords),
      stats: new Uint32Array(g.efBlocks),
    })));
  }

  /** Every option that shapes the state. */
  protected stateConfig(): Record<string, ConfigValue> {
    return microAdamStateConfig(this.options);
  }

  /** Window slot the next applied step writes. */
  protected override get ring(): number {
    return this.#ring;
  }

  protected override set ring(r: number) {
    this.#ring = r;
  }

  /**
   * The ring position must be `step mod window` (it advances once per applied
   * step), and every window index must lie inside its block, since the
   * moments are rebuilt by scattering through those indices.
   */
  protected override validateState(s: OptimizerState): void {
    checkMicroAdamState(s, this.geometry);
  }

  /** One MicroAdam step (docs/algorithm.md steps 1–9) over every tensor, then the ring advances. */
  protected applyStep(t: number, tensors: TensorStepInput[]): void {
    const shared = stepConstants(this.options, t, this.#ring);
    for (const x of tensors) {
      stepTensor(
        this.geometry[x.index],
        this.state[x.index] as Record<string, Uint32Array>,
        x,
        shared,
      );
    }
    this.#ring = (this.#ring + 1) % this.options.window;
  }
}

/**
 * The per-step constants of a MicroAdam step shared by every tensor: the
 * window row being written, the rows in use, each row's decay factors, the
 * bias corrections, ε and the dtype's rounding.
 */
export interface StepConstants {
  /** Window slot this step writes. */
  ring: number;
  /** Rows in use: `min(t, m)`. */
  rows: number;
  /** β1^age of each row (f32 powers). */
  d1: Float64Array;
  /** β2^age of each row (f32 powers). */
  d2: Float64Array;
  /** First-moment bias correction `(1 − β1)/(1 − β1^t)`. */
  c1: number;
  /** Second-moment bias correction `(1 − β2)/(1 − β2^t)`. */
  c2: number;
  /** ε as f32. */
  eps: number;
  /** Whether `e`, `a`, `u` and `p` are rounded to bf16 (spec §A). */
  bf16: boolean;
}

/**
 * The {@link StepConstants} of applied step `t` with the window at `ring`.
 *
 * @example
 * ```ts
 * import { stepConstants } from "./microadam.ts";
 * const k = stepConstants({ window: 2, betas: [0.5, 0.5], eps: 0, dtype: "f32" }, 3, 0);
 * console.log(k.rows, Array.from(k.d1)); // 2 [ 1, 0.5 ]
 * ```
 */
export function stepConstants(
  o: {
    window: number;
    betas: readonly [number, number];
    eps: number;
    dtype: string;
  },
  t: number,
  ring: number,
): StepConstants {
  const m = o.window;
  const b1 = fr(o.betas[0]);
  const b2 = fr(o.betas[1]);
  // Decay of each window slot: row i was written (t − 1 − i) mod m steps ago.
  const rows = Math.min(t, m);
  const d1 = new Float64Array(rows);
  const d2 = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    const age = (t - 1 - i) % m;
    d1[i] = powF32(b1, age);
    d2[i] = powF32(b2, age);
  }
  return {
    ring,
    rows,
    d1,
    d2,
    c1: biasCorrection(b1, t),
    c2: biasCorrection(b2, t),
    eps: fr(o.eps),
    bf16: o.dtype === "bf16",
  };
}

/**
 * One MicroAdam step of one tensor, spec steps 1–9, from the pieces below.
 * (The ablations in `ablations.ts` compose the same pieces differently.)
 */
function stepTensor(
  g: MicroAdamGeometry,
  s: Record<string, Uint32Array>,
  x: TensorStepInput,
  k: StepConstants,
): void {
  const rnd = k.bf16 ? roundBf16 : identity;
  const p = k.bf16
    ? bf16View(x.tensor.param as Uint16Array)
    : x.tensor.param as Float32Array;
  const grad = k.bf16
    ? bf16View(x.tensor.grad as Uint16Array)
    : x.tensor.grad as Float32Array;
  const a = addErrorFeedback(g, s, grad, rnd);
  selectIntoWindow(g, s.window, a, k.ring);
  storeErrorFeedback(g, s, a);
  applyWeightDecay(p, x.lr, x.weightDecay, rnd);
  const { M, S } = windowMoments(g, s.window, k);
  applyUpdate(p, M, S, k, x.lr, rnd);
  if (k.bf16) {
    const out = x.tensor.param as Uint16Array;
    for (let j = 0; j < g.length; j++) out[j] = bf16Bits(p[j]);
  }
}

/**
 * Spec step 1: `a = rnd(g + rnd(e))` with `e` dequantized from the 4-bit
 * codes and bf16 statistics in `s` (`rnd` is bf16 rounding in §A, the
 * identity in §B). Pass a zero gradient to read the stored error itself.
 *
 * @returns `a`, a new array.
 *
 * @example
 * ```ts
 * import { addErrorFeedback } from "./microadam.ts";
 * import { microAdamGeometry } from "../core/geometry.ts";
 * const g = microAdamGeometry(4, { window: 1, density: 0.25, topkBlockSize: 4, efBlockSize: 4 });
 * const s = { codes: new Uint32Array(1), stats: new Uint32Array(2) };
 * console.log(Array.from(addErrorFeedback(g, s, new Float32Array([1, 2, 3, 4]), (x) => x))); // [ 1, 2, 3, 4 ]
 * ```
 */
export function addErrorFeedback(
  g: MicroAdamGeometry,
  s: Record<string, Uint32Array>,
  grad: Float32Array,
  rnd: (x: number) => number,
): Float32Array {
  const { codes, stats } = s;
  const d = g.length;
  const Q = g.efBlockSize;
  const a = new Float32Array(d);
  for (let qb = 0, start = 0; start < d; qb++, start += Q) {
    const end = Math.min(d, start + Q);
    const mn = bf16ToNumber(stats[qb] & 0xffff);
    const mx = bf16ToNumber(stats[qb] >>> 16);
    const u = fr(fr(mx - mn) / 15);
    for (let j = start; j < end; j++) {
      const e = rnd(fmaF32(getCode(codes, j), u, mn));
      a[j] = rnd(fr(grad[j] + e));
    }
  }
  return a;
}

/**
 * Spec steps 2–3: the per-block top-k of `|a|` into window row `ring`, then
 * the kept entries of `a` set to zero (`a` is left holding the residual).
 *
 * @example
 * ```ts
 * import { selectIntoWindow } from "./microadam.ts";
 * import { microAdamGeometry } from "../core/geometry.ts";
 * const g = microAdamGeometry(4, { window: 1, density: 0.25, topkBlockSize: 4, efBlockSize: 4 });
 * const a = new Float32Array([1, -3, 2, 0]);
 * const window = new Uint32Array(1);
 * selectIntoWindow(g, window, a, 0);
 * console.log(window[0] & 0xffff, Array.from(a)); // 1 [ 1, 0, 2, 0 ]
 * ```
 */
export function selectIntoWindow(
  g: MicroAdamGeometry,
  window: Uint32Array,
  a: Float32Array,
  ring: number,
): void {
  for (let b = 0; b < g.blocks; b++) {
    const len = blockLength(g, b);
    const kb = blockK(g, b);
    const start = b * g.blockSize;
    const selected = topkBlock(a.subarray(start, start + len), kb);
    const base = blockWindowOffset(g, b) + ring * kb;
    for (let n = 0; n < kb; n++) {
      const l = selected[n];
      window[base + n] = packEntry(l, bf16Bits(a[start + l]));
    }
    for (let n = 0; n < kb; n++) a[start + selected[n]] = 0;
  }
}

/**
 * Spec steps 4–5: EF statistics of the residual `a` per EF block (stored
 * bf16: min rounded down, max up) and its 4-bit codes, into `s`.
 *
 * @example
 * ```ts
 * import { addErrorFeedback, storeErrorFeedback } from "./microadam.ts";
 * import { microAdamGeometry } from "../core/geometry.ts";
 * const g = microAdamGeometry(2, { window: 1, density: 0.5, topkBlockSize: 2, efBlockSize: 2 });
 * const s = { codes: new Uint32Array(1), stats: new Uint32Array(2) };
 * storeErrorFeedback(g, s, new Float32Array([0, 1.5]));
 * console.log(Array.from(addErrorFeedback(g, s, new Float32Array(2), (x) => x))); // [ 0, 1.5 ]
 * ```
 */
export function storeErrorFeedback(
  g: MicroAdamGeometry,
  s: Record<string, Uint32Array>,
  a: Float32Array,
): void {
  const { codes, stats } = s;
  const d = g.length;
  const Q = g.efBlockSize;
  for (let qb = 0, start = 0; start < d; qb++, start += Q) {
    const end = Math.min(d, start + Q);
    let mn = a[start];
    let mx = a[start];
    for (let j = start + 1; j < end; j++) {
      if (a[j] < mn) mn = a[j];
      if (a[j] > mx) mx = a[j];
    }
    // `+ 0` turns −0 into +0: canonical zero stats.
    const mnBits = bf16BitsDown(mn + 0);
    const mxBits = bf16BitsUp(mx + 0);
    stats[qb] = packStats(mnBits, mxBits);
    const mnS = bf16ToNumber(mnBits);
    const u = fr(fr(bf16ToNumber(mxBits) - mnS) / 15);
    for (let j = start; j < end; j++) {
      let q = 0;
      if (u !== 0) {
        q = Math.floor(fr(fr(fr(a[j] - mnS) / u) + 0.5));
        q = q < 0 ? 0 : q > 15 ? 15 : q;
      }
      setCode(codes, j, q);
    }
  }
}

/**
 * Spec step 6: decoupled weight decay `p = rnd(p · f32(1 − lr·wd))` when
 * `wd > 0` (`1 − lr·wd` in f64 from the JS numbers).
 *
 * @example
 * ```ts
 * import { applyWeightDecay } from "./microadam.ts";
 * const p = new Float32Array([2]);
 * applyWeightDecay(p, 0.5, 0.5, (x) => x);
 * console.log(p[0]); // 1.5
 * ```
 */
export function applyWeightDecay(
  p: Float32Array,
  lr: number,
  wd: number,
  rnd: (x: number) => number,
): void {
  if (wd > 0) {
    const f = fr(1 - lr * wd);
    for (let j = 0; j < p.length; j++) p[j] = rnd(fr(p[j] * f));
  }
}

/**
 * Spec step 7: the moments `M` and `S` rebuilt from the window rows in slot
 * order (a scatter; a row's indices are distinct within a block, so the
 * per-coordinate order is the slot order).
 *
 * @example
 * ```ts
 * import { selectIntoWindow, stepConstants, windowMoments } from "./microadam.ts";
 * import { microAdamGeometry } from "../core/geometry.ts";
 * const g = microAdamGeometry(2, { window: 2, density: 0.5, topkBlockSize: 2, efBlockSize: 2 });
 * const window = new Uint32Array(2);
 * selectIntoWindow(g, window, new Float32Array([0, 2]), 0);
 * const { M, S } = windowMoments(g, window, stepConstants({ window: 2, betas: [0.5, 0.5], eps: 0, dtype: "f32" }, 1, 0));
 * console.log(Array.from(M), Array.from(S)); // [ 0, 2 ] [ 0, 4 ]
 * ```
 */
export function windowMoments(
  g: MicroAdamGeometry,
  window: Uint32Array,
  k: StepConstants,
): { M: Float32Array; S: Float32Array } {
  const d = g.length;
  const M = new Float32Array(d);
  const S = new Float32Array(d);
  for (let i = 0; i < k.rows; i++) {
    const f1 = k.d1[i];
    const f2 = k.d2[i];
    for (let b = 0; b < g.blocks; b++) {
      const kb = blockK(g, b);
      const start = b * g.blockSize;
      const base = blockWindowOffset(g, b) + i * kb;
      for (let n = 0; n < kb; n++) {
        const entry = window[base + n];
        const j = start + (entry & 0xffff);
        const v = bf16ToNumber(entry >>> 16);
        M[j] = fmaF32(f1, v, M[j]);
        S[j] = fmaF32(fr(f2 * v), v, S[j]);
      }
    }
  }
  return { M, S };
}

/**
 * Spec steps 8–9: the bias-corrected update of every coordinate,
 * `p = rnd(fma(−lr, rnd((c1·M) / (sqrt(c2·S) + ε)), p))`.
 *
 * @example
 * ```ts
 * import { applyUpdate, stepConstants } from "./microadam.ts";
 * const p = new Float32Array([1]);
 * const k = stepConstants({ window: 1, betas: [0.5, 0.5], eps: 0, dtype: "f32" }, 1, 0);
 * applyUpdate(p, new Float32Array([4]), new Float32Array([16]), k, 0.25, (x) => x);
 * console.log(p[0]); // 0.75
 * ```
 */
export function applyUpdate(
  p: Float32Array,
  M: Float32Array,
  S: Float32Array,
  k: StepConstants,
  lr: number,
  rnd: (x: number) => number,
): void {
  const negLr = fr(-lr);
  for (let j = 0; j < p.length; j++) {
    const den = fr(fr(Math.sqrt(fr(k.c2 * S[j]))) + k.eps);
    const u = rnd(fr(fr(k.c1 * M[j]) / den));
    p[j] = rnd(fmaF32(negLr, u, p[j]));
  }
}

/**
 * Exact f32 copy of bf16 bits.
 *
 * @example
 * ```ts
 * import { bf16View } from "./microadam.ts";
 * console.log(bf16View(new Uint16Array([0x3fc0]))[0]); // 1.5
 * ```
 */
export function bf16View(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i] << 16;
  return out;
}

/**
 * Block-local indices of the `k` largest `|a|`, in the authors' write order:
 * every value strictly above the threshold (the k-th largest magnitude) in
 * ascending index, then threshold ties in ascending index until k are taken.
 *
 * @example
 * ```ts
 * import { topkBlock } from "./microadam.ts";
 * console.log(Array.from(topkBlock(new Float32Array([1, -3, 2, 2, 3]), 3))); // [ 1, 4, 2 ]
 * ```
 */
export function topkBlock(a: Float32Array, k: number): Uint32Array {
  const n = a.length;
  const mag = new Float32Array(n);
  for (let i = 0; i < n; i++) mag[i] = Math.abs(a[i]);
  const threshold = mag.slice().sort()[n - k];
  const out = new Uint32Array(k);
  let w = 0;
  for (let i = 0; i < n; i++) if (mag[i] > threshold) out[w++] = i;
  for (let i = 0; i < n && w < k; i++) if (mag[i] === threshold) out[w++] = i;
  return out;
}
