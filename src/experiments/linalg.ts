/**
 * The little dense linear algebra the experiments need: solving a symmetric
 * positive definite system (least squares' normal equations) in f64.
 *
 * @module
 */

import { InvalidOptionError } from "../errors.ts";

/**
 * Solves `G·x = h` for a symmetric positive definite `G` (n × n, row-major)
 * by Cholesky factorization `G = L·Lᵀ`.
 *
 * @throws {InvalidOptionError} when `G` is not positive definite (a pivot ≤ 0).
 *
 * @example
 * ```ts
 * import { solveSpd } from "./linalg.ts";
 * const x = solveSpd(new Float64Array([4, 2, 2, 3]), new Float64Array([2, 1]), 2);
 * console.log(Array.from(x)); // [ 0.5, 0 ]
 * ```
 */
export function solveSpd(
  G: Float64Array,
  h: Float64Array,
  n: number,
): Float64Array {
  const L = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let s = G[j * n + j];
    for (let k = 0; k < j; k++) s -= L[j * n + k] ** 2;
    if (!(s > 0)) {
      throw new InvalidOptionError(
        `solveSpd: expected a positive definite matrix, got pivot ${s} at row ${j}`,
      );
    }
    const piv = Math.sqrt(s);
    L[j * n + j] = piv;
    for (let i = j + 1; i < n; i++) {
      let t = G[i * n + j];
      for (let k = 0; k < j; k++) t -= L[i * n + k] * L[j * n + k];
      L[i * n + j] = t / piv;
    }
  }
  // Forward (L·y = h), then backward (Lᵀ·x = y).
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let t = h[i];
    for (let k = 0; k < i; k++) t -= L[i * n + k] * y[k];
    y[i] = t / L[i * n + i];
  }
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let t = y[i];
    for (let k = i + 1; k < n; k++) t -= L[k * n + i] * x[k];
    x[i] = t / L[i * n + i];
  }
  return x;
}
