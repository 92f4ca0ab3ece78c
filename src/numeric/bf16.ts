/**
 * bfloat16 conversions. A bf16 value is the top 16 bits of an IEEE f32, held
 * here as a number in 0..0xFFFF (its bit pattern).
 *
 * @module
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * Rounds a number to the nearest bf16 (ties to even, through f32 first) and
 * returns its 16-bit pattern. NaN becomes a quiet NaN of the same sign.
 *
 * @example
 * ```ts
 * import { bf16Bits } from "./bf16.ts";
 * console.log(bf16Bits(1.0).toString(16)); // "3f80"
 * ```
 */
export function bf16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) {
    return (bits >>> 16) | 0x40;
  }
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/**
 * The f32 value of a bf16 bit pattern.
 *
 * @example
 * ```ts
 * import { bf16ToNumber } from "./bf16.ts";
 * console.log(bf16ToNumber(0x3f80)); // 1
 * ```
 */
export function bf16ToNumber(bits: number): number {
  u32[0] = (bits & 0xffff) << 16;
  return f32[0];
}

/**
 * Rounds to bf16, nearest-even, and returns the value (not the bits).
 *
 * @example
 * ```ts
 * import { roundBf16 } from "./bf16.ts";
 * console.log(roundBf16(1.00390625)); // 1 (a tie, rounded to even)
 * ```
 */
export function roundBf16(x: number): number {
  return bf16ToNumber(bf16Bits(x));
}

/**
 * Rounds an f32 value to the bf16 at or below it (toward −∞) and returns the
 * bits. Used for EF minima in f32 mode, so a stored range always covers the data.
 *
 * @example
 * ```ts
 * import { bf16BitsDown, bf16ToNumber } from "./bf16.ts";
 * console.log(bf16ToNumber(bf16BitsDown(1.001)) <= 1.001); // true
 * ```
 */
export function bf16BitsDown(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const trunc = bits >>> 16;
  if ((bits & 0xffff) === 0 || (bits & 0x7fffffff) >= 0x7f800000) return trunc;
  return bits >>> 31 ? trunc + 1 : trunc; // negative: away from zero
}

/**
 * Rounds an f32 value to the bf16 at or above it (toward +∞) and returns the
 * bits. Used for EF maxima in f32 mode.
 *
 * @example
 * ```ts
 * import { bf16BitsUp, bf16ToNumber } from "./bf16.ts";
 * console.log(bf16ToNumber(bf16BitsUp(1.001)) >= 1.001); // true
 * ```
 */
export function bf16BitsUp(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const trunc = bits >>> 16;
  if ((bits & 0xffff) === 0 || (bits & 0x7fffffff) >= 0x7f800000) return trunc;
  return bits >>> 31 ? trunc : trunc + 1; // positive: away from zero
}

/**
 * Converts a Float32Array to packed bf16 bits (round to nearest even).
 *
 * @example
 * ```ts
 * import { toBf16Array } from "./bf16.ts";
 * console.log(toBf16Array(new Float32Array([1, -2]))); // Uint16Array [16256, 49152]
 * ```
 */
export function toBf16Array(
  values: ArrayLike<number>,
): Uint16Array<ArrayBuffer> {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = bf16Bits(values[i]);
  return out;
}

/**
 * Converts bf16 bits to a Float32Array (exact).
 *
 * @example
 * ```ts
 * import { fromBf16Array } from "./bf16.ts";
 * console.log(fromBf16Array(new Uint16Array([0x3f80]))); // Float32Array [1]
 * ```
 */
export function fromBf16Array(bits: Uint16Array): Float32Array<ArrayBuffer> {
  const out = new Float32Array(bits.length);
  const view = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) view[i] = bits[i] << 16;
  return out;
}
