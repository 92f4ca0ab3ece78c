/**
 * A quantized error-feedback buffer with a chosen bit width, bucket size and
 * rounding, on the CPU in f32: the piece the theory variant
 * (`MicroAdamTheoryCpu`) uses at 4 bits, and the one the ablations
 * (`ablations.ts`) vary.
 *
 * ```
 * per bucket of `bucketSize` elements: mn = min(r), mx = max(r) (f32)
 * L = 2^bits − 1, u = f32(f32(mx − mn) / L)
 * nearest:    q = floor(f32(f32(r − mn) / u) + 0.5)      clamped to 0..L
 * stochastic: q = floor(f32(f32(r − mn) / u) + U[0, 1))  clamped to 0..L
 * dequantized: e = fma(q, u, mn)
 * ```
 *
 * `bits: 32` keeps the residual itself (no quantization: "dense" error
 * feedback). Codes are packed `floor(32 / bits)` to a u32 word, lowest bits
 * first, so 4-bit codes have the layout of `numeric/pack.ts` (eight per word).
 *
 * @module
 */

import { describe, InvalidOptionError } from "../errors.ts";
import { fmaF32 } from "../numeric/f32.ts";
import { rng } from "../numeric/rng.ts";

const fr = Math.fround;

/**
 * How an error feedback stores what top-k left out.
 *
 * @example
 * ```ts
 * import type { QuantizerSpec } from "./error_feedback.ts";
 * const q: QuantizerSpec = { bits: 2, bucketSize: 64, rounding: "stochastic", seed: 1 };
 * console.log(q.bits); // 2
 * ```
 */
export interface QuantizerSpec {
  /** Bits per element: an integer in 1..16, or 32 for the unquantized f32 residual. */
  bits: number;
  /** Elements sharing one min/max pair (an integer ≥ 1). */
  bucketSize: number;
  /** Round to the nearest code, or up with probability equal to the remainder (unbiased). @default {"nearest"} */
  rounding?: "nearest" | "stochastic";
  /** Seed of the stochastic rounding's generator (one generator per buffer). @default {0} */
  seed?: number;
}

/** A {@link QuantizerSpec} with every default filled in. */
export type ResolvedQuantizerSpec = Required<QuantizerSpec>;

/**
 * Validates a quantizer spec and fills in its defaults. `where` prefixes the
 * messages with the option's name.
 *
 * @throws {InvalidOptionError} naming the key and the bad value.
 *
 * @example
 * ```ts
 * import { resolveQuantizerSpec } from "./error_feedback.ts";
 * console.log(resolveQuantizerSpec({ bits: 4, bucketSize: 32 }).rounding); // nearest
 * try { resolveQuantizerSpec({ bits: 5.5, bucketSize: 32 }); } catch (e) { console.log((e as Error).name); } // InvalidOptionError
 * ```
 */
export function resolveQuantizerSpec(
  spec: QuantizerSpec,
  where = "errorFeedback",
): ResolvedQuantizerSpec {
  if (typeof spec !== "object" || spec === null) {
    throw new InvalidOptionError(
      `${where}: expected { bits, bucketSize, rounding?, seed? }, got ${
        describe(spec)
      }`,
    );
  }
  const { bits, bucketSize } = spec;
  if (
    !Number.isInteger(bits) || !((bits >= 1 && bits <= 16) || bits === 32)
  ) {
    throw new InvalidOptionError(
      `${where}.bits: expected an integer in 1..16, or 32 (unquantized), got ${
        describe(bits)
      }`,
    );
  }
  if (!Number.isInteger(bucketSize) || bucketSize < 1) {
    throw new InvalidOptionError(
      `${where}.bucketSize: expected an integer >= 1, got ${
        describe(bucketSize)
      }`,
    );
  }
  const rounding = spec.rounding ?? "nearest";
  if (rounding !== "nearest" && rounding !== "stochastic") {
    throw new InvalidOptionError(
      `${where}.rounding: expected "nearest" or "stochastic", got ${
        describe(rounding)
      }`,
    );
  }
  const seed = spec.seed ?? 0;
  if (!Number.isInteger(seed)) {
    throw new InvalidOptionError(
      `${where}.seed: expected an integer, got ${describe(seed)}`,
    );
  }
  return { bits, bucketSize, rounding, seed };
}

/**
 * The state arrays of a quantized error feedback over `length` elements:
 * `codes` (packed) and `stats` (f32 `[min, max]` per bucket), or, for
 * `bits: 32`, `values` (the f32 residual).
 *
 * @example
 * ```ts
 * import { errorFeedbackState } from "./error_feedback.ts";
 * const s = errorFeedbackState(100, { bits: 4, bucketSize: 32, rounding: "nearest", seed: 0 });
 * console.log(s.codes.length, s.stats.length); // 13 8
 * ```
 */
export function errorFeedbackState(
  length: number,
  spec: ResolvedQuantizerSpec,
): Record<string, Float32Array | Uint32Array> {
  if (spec.bits === 32) return { values: new Float32Array(length) };
  const perWord = Math.floor(32 / spec.bits);
  return {
    codes: new Uint32Array(Math.ceil(length / perWord)),
    stats: new Float32Array(2 * (Math.floor(length / spec.bucketSize) + 1)),
  };
}

/**
 * A quantized error feedback bound to its state arrays: {@link
 * QuantizedErrorFeedback.addTo} adds the stored error to a vector,
 * {@link QuantizedErrorFeedback.store} quantizes a residual into the state.
 *
 * @example
 * ```ts
 * import { errorFeedbackState, QuantizedErrorFeedback, resolveQuantizerSpec } from "./error_feedback.ts";
 * const spec = resolveQuantizerSpec({ bits: 1, bucketSize: 4 });
 * const ef = new QuantizedErrorFeedback(spec, errorFeedbackState(4, spec));
 * ef.store(new Float32Array([0, 1, 0.4, 0.6]));
 * console.log(Array.from(ef.addTo(new Float32Array(4)))); // [ 0, 1, 0, 1 ]
 * ```
 */
export class QuantizedErrorFeedback {
  readonly #spec: ResolvedQuantizerSpec;
  readonly #state: Record<string, Float32Array | Uint32Array>;
  readonly #uniform: () => number;
  readonly #levels: number;
  readonly #perWord: number;
  readonly #mask: number;

  /**
   * @param spec A resolved quantizer spec.
   * @param state Arrays from {@link errorFeedbackState} (owned by the optimizer's state).
   */
  constructor(
    spec: ResolvedQuantizerSpec,
    state: Record<string, Float32Array | Uint32Array>,
  ) {
    this.#spec = spec;
    this.#state = state;
    this.#uniform = rng(spec.seed);
    this.#levels = spec.bits === 32 ? 0 : 2 ** spec.bits - 1;
    this.#perWord = spec.bits === 32 ? 1 : Math.floor(32 / spec.bits);
    this.#mask = this.#levels;
  }

  /**
   * `c[j] = f32(c[j] + e[j])` for every element (e dequantized as `fma(q, u, mn)`).
   *
   * @returns `c`, updated in place.
   */
  addTo(c: Float32Array): Float32Array {
    if (this.#spec.bits === 32) {
      const e = this.#state.values as Float32Array;
      for (let j = 0; j < c.length; j++) c[j] = fr(c[j] + e[j]);
      return c;
    }
    const codes = this.#state.codes as Uint32Array;
    const stats = this.#state.stats as Float32Array;
    const Q = this.#spec.bucketSize;
    const L = this.#levels;
    for (let qb = 0, start = 0; start < c.length; qb++, start += Q) {
      const mn = stats[2 * qb];
      const u = fr(fr(stats[2 * qb + 1] - mn) / L);
      const end = Math.min(c.length, start + Q);
      for (let j = start; j < end; j++) {
        c[j] = fr(c[j] + fmaF32(this.#code(codes, j), u, mn));
      }
    }
    return c;
  }

  /** Quantizes residual `r` into the state (min/max per bucket, then codes). */
  store(r: Float32Array): void {
    if (this.#spec.bits === 32) {
      const e = this.#state.values as Float32Array;
      for (let j = 0; j < r.length; j++) e[j] = r[j] + 0;
      return;
    }
    const codes = this.#state.codes as Uint32Array;
    const stats = this.#state.stats as Float32Array;
    const Q = this.#spec.bucketSize;
    const L = this.#levels;
    const stochastic = this.#spec.rounding === "stochastic";
    for (let qb = 0, start = 0; start < r.length; qb++, start += Q) {
      const end = Math.min(r.length, start + Q);
      let mn = r[start];
      let mx = r[start];
      for (let j = start + 1; j < end; j++) {
        if (r[j] < mn) mn = r[j];
        if (r[j] > mx) mx = r[j];
      }
      stats[2 * qb] = mn + 0; // +0 for −0: canonical state bytes
      stats[2 * qb + 1] = mx + 0;
      const u = fr(fr(mx - mn) / L);
      for (let j = start; j < end; j++) {
        let q = 0;
        if (u !== 0) {
          const x = fr(fr(r[j] - mn) / u);
          q = Math.floor(stochastic ? x + this.#uniform() : fr(x + 0.5));
          q = q < 0 ? 0 : q > L ? L : q;
        }
        this.#setCode(codes, j, q);
      }
    }
  }

  /** The stored error itself (a fresh array). */
  values(length: number): Float32Array {
    return this.addTo(new Float32Array(length));
  }

  #code(words: Uint32Array, j: number): number {
    const w = Math.floor(j / this.#perWord);
    const s = (j - w * this.#perWord) * this.#spec.bits;
    return (words[w] >>> s) & this.#mask;
  }

  #setCode(words: Uint32Array, j: number, q: number): void {
    const w = Math.floor(j / this.#perWord);
    const s = (j - w * this.#perWord) * this.#spec.bits;
    words[w] = ((words[w] & ~(this.#mask << s)) | (q << s)) >>> 0;
  }
}
