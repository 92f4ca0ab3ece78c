/**
 * The optimization loop every experiment shares: a gradient oracle writes
 * the gradient, the optimizer steps, an optional projection keeps the
 * parameters feasible, and an observer records at chosen steps.
 *
 * @module
 */

import type { CpuTensor } from "../reference/cpu_optimizer.ts";
import type { Steppable } from "./optimizers.ts";

/** What {@link optimize} runs. */
export interface RunSpec {
  /** Initial parameters (copied). */
  x0: ArrayLike<number>;
  /** Builds the optimizer over the run's tensor. */
  optimizer: (tensor: CpuTensor) => Steppable;
  /** Writes the gradient the optimizer sees at step t (1-based) and point x into `out`. */
  gradient: (x: Float32Array, t: number, out: Float32Array) => void;
  /** Number of steps T. */
  steps: number;
  /** Maps the parameters back onto the feasible set after each step. */
  project?: (x: Float32Array) => void;
  /** Called with (t, x) at t = 0 and after each step listed in `at` (every step when `at` is undefined). */
  record?: (t: number, x: Float32Array) => void;
  /** Steps to record at (ascending). */
  at?: readonly number[];
}

/**
 * Runs `spec` and returns the final parameters.
 *
 * @example
 * ```ts
 * import { optimize } from "./runner.ts";
 * import { AdamCpu } from "../reference/adam.ts";
 * const x = optimize({
 *   x0: [5],
 *   optimizer: (t) => new AdamCpu([t], { lr: 0.1 }),
 *   gradient: (x, _t, g) => { g[0] = 2 * x[0]; },
 *   steps: 500,
 * });
 * console.log(Math.abs(x[0]) < 0.1); // true
 * ```
 */
export function optimize(spec: RunSpec): Float32Array {
  const param = Float32Array.from(spec.x0);
  const grad = new Float32Array(param.length);
  const opt = spec.optimizer({ param, grad });
  const at = spec.at;
  let next = 0;
  spec.record?.(0, param);
  while (at && next < at.length && at[next] <= 0) next++;
  for (let t = 1; t <= spec.steps; t++) {
    spec.gradient(param, t, grad);
    opt.step();
    spec.project?.(param);
    if (spec.record) {
      if (!at) spec.record(t, param);
      else if (next < at.length && at[next] === t) {
        spec.record(t, param);
        while (next < at.length && at[next] <= t) next++;
      }
    }
  }
  return param;
}

/**
 * Projection onto the box [lo, hi]^d (in place).
 *
 * @example
 * ```ts
 * import { boxProjection } from "./runner.ts";
 * const x = new Float32Array([-3, 0.5, 2]);
 * boxProjection(-1, 1)(x);
 * console.log(Array.from(x)); // [ -1, 0.5, 1 ]
 * ```
 */
export function boxProjection(
  lo: number,
  hi: number,
): (x: Float32Array) => void {
  return (x) => {
    for (let i = 0; i < x.length; i++) {
      if (x[i] < lo) x[i] = lo;
      else if (x[i] > hi) x[i] = hi;
    }
  };
}

/**
 * About `count` steps in 1..T, evenly spaced (always including T): where to
 * evaluate an average over a run (the stratified estimate of
 * `(1/T) Σ_t h(θ_t)` is the mean over these steps).
 *
 * @example
 * ```ts
 * import { evenSteps } from "./runner.ts";
 * console.log(evenSteps(10, 4)); // [ 3, 5, 8, 10 ]
 * ```
 */
export function evenSteps(T: number, count: number): number[] {
  if (count >= T) return Array.from({ length: T }, (_, i) => i + 1);
  const out = new Set<number>();
  for (let i = 1; i <= count; i++) out.add(Math.round((i * T) / count));
  return [...out];
}

/**
 * About `perDecade` log-spaced steps per decade in 1..T (always including 1
 * and T), for plotting a curve on a log axis.
 *
 * @example
 * ```ts
 * import { logSteps } from "./runner.ts";
 * console.log(logSteps(1000, 1)); // [ 1, 10, 100, 1000 ]
 * ```
 */
export function logSteps(T: number, perDecade: number): number[] {
  const out = new Set<number>([1]);
  const n = Math.ceil(Math.log10(T) * perDecade);
  for (let i = 1; i <= n; i++) {
    out.add(Math.min(T, Math.round(10 ** (i / perDecade))));
  }
  out.add(T);
  return [...out].sort((a, b) => a - b);
}
