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
    const o = this.options;
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
    const shared: StepConstants = {
      ring: this.#ring,
      rows,
      d1,
      d2,
      c1: biasCorrection(b1, t),
      c2: biasCorrection(b2, t),
      eps: fr(o.eps),
      bf16: o.dtype === "bf16",
    };
    for (const x of tensors) {
      stepTensor(
        this.geometry[x.index],
        this.state[x.index] as Record<string, Uint32Array>,
        x,
        shared,
      );
    }
    this.#ring = (this.#ring + 1) % m;
  }
}

interface StepConstants {
  ring: number;
  rows: number;
  d1: Float64Array;
  d2: Float64Array;
  c1: number;
  c2: number;
  eps: number;
  bf16: boolean;
}

function stepTensor(
  g: MicroAdamGeometry,
  s: Record<string, Uint32Array>,
  x: TensorStepInput,
  k: StepConstants,
): void {
  const { window, codes, stats } = s;
  const d = g.length;
  const Q = g.efBlockSize;
  const rnd = k.bf16 ? roundBf16 : identity;
  const p = k.bf16
    ? bf16View(x.tensor.param as Uint16Array)
    : x.tensor.param as Float32Array;
  const grad = k.bf16
    ? bf16View(x.tensor.grad as Uint16Array)
    : x.tensor.grad as Float32Array;

  // 1. a = g + dequantized error feedback.
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

  // 2–3. Per-block top-k of |a| into window row `ring`, then zero the kept entries.
  for (let b = 0; b < g.blocks; b++) {
    const len = blockLength(g, b);
    const kb = blockK(g, b);
    const start = b * g.blockSize;
    const selected = topkBlock(a.subarray(start, start + len), kb);
    const base = blockWindowOffset(g, b) + k.ring * kb;
    for (let n = 0; n < kb; n++) {
      const l = selected[n];
      window[base + n] = packEntry(l, bf16Bits(a[start + l]));
    }
    for (let n = 0; n < kb; n++) a[start + selected[n]] = 0;
  }

  // 4–5. EF statistics (stored bf16: min down, max up) and 4-bit codes.
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

  // 6. Decoupled weight decay; 1 − lr·wd in f64 from the JS numbers.
  if (x.weightDecay > 0) {
    const f = fr(1 - x.lr * x.weightDecay);
    for (let j = 0; j < d; j++) p[j] = rnd(fr(p[j] * f));
  }

  // 7. Moments rebuilt from the window, rows in slot order (scatter; a row's
  // indices are distinct within a block, so the per-coordinate order is the slot order).
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

  // 8–9. Bias-corrected update of every coordinate.
  const negLr = fr(-x.lr);
  for (let j = 0; j < d; j++) {
    const den = fr(fr(Math.sqrt(fr(k.c2 * S[j]))) + k.eps);
    const u = rnd(fr(fr(k.c1 * M[j]) / den));
    p[j] = rnd(fmaF32(negLr, u, p[j]));
  }

  if (k.bf16) {
    const out = x.tensor.param as Uint16Array;
    for (let j = 0; j < d; j++) out[j] = bf16Bits(p[j]);
  }
}

/** Exact f32 copy of bf16 bits. */
function bf16View(bits: Uint16Array): Float32Array {
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
