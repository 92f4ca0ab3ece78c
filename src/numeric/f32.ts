/**
 * Single-precision arithmetic that JavaScript lacks: a correctly rounded
 * f32 fused multiply-add and the square-and-multiply power the authors' CUDA
 * code uses. Everything else is `Math.fround` after each f64 operation, which
 * is exact for +, −, ×, ÷ and sqrt of f32 inputs (double rounding through f64
 * is innocuous for them).
 *
 * @module
 */

const f = new Float32Array(1);
const u = new Uint32Array(f.buffer);

function nextF32(x: number, up: boolean): number {
  f[0] = x;
  if (x === 0) {
    u[0] = up ? 1 : 0x80000001;
  } else if ((x > 0) === up) {
    u[0] = u[0] + 1;
  } else {
    u[0] = u[0] - 1;
  }
  return f[0];
}

/**
 * `fma(a, b, c)` rounded once to f32, for f32 inputs: the product is exact in
 * f64, the sum's rounding error is recovered with TwoSum, and an f64 sum that
 * lands exactly on an f32 midpoint is resolved by the error's sign.
 *
 * @example
 * ```ts
 * import { fmaF32 } from "./f32.ts";
 * console.log(fmaF32(3, 0.5, 1)); // 2.5
 * ```
 */
export function fmaF32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  if (!Number.isFinite(s)) return Math.fround(s);
  const bv = s - p;
  const err = (p - (s - bv)) + (c - bv);
  const r = Math.fround(s);
  if (err === 0 || r === s) return r;
  const other = nextF32(r, s > r);
  if ((r + other) / 2 !== s) return r; // not a tie: f64 rounding kept the side
  // s is exactly halfway between r and other; the true sum lies toward err.
  return (err > 0) === (other > r) ? other : r;
}

/**
 * `base^e` for an integer `e ≥ 0` by square-and-multiply in f32, in the
 * order of the reference implementation:
 * `res = 1; while e > 0: if e odd: res *= base, e -= 1; base *= base; e >>= 1`.
 *
 * @example
 * ```ts
 * import { powF32 } from "./f32.ts";
 * console.log(powF32(Math.fround(0.5), 3)); // 0.125
 * ```
 */
export function powF32(base: number, e: number): number {
  let res = 1;
  let b = Math.fround(base);
  while (e > 0) {
    if (e & 1) {
      res = Math.fround(res * b);
      e -= 1;
    }
    b = Math.fround(b * b);
    e = Math.floor(e / 2);
  }
  return res;
}

/**
 * Adam's bias-correction factor in the MicroAdam rounding order:
 * `f32((1 − β) / (1 − β^t))`, with β an f32, `β^t` by {@link powF32} and the
 * subtraction and division in f64.
 *
 * @example
 * ```ts
 * import { biasCorrection } from "./f32.ts";
 * console.log(biasCorrection(0.9, 1)); // 1
 * ```
 */
export function biasCorrection(beta: number, t: number): number {
  const b = Math.fround(beta);
  return Math.fround((1 - b) / (1 - powF32(b, t)));
}
