/**
 * The objectives of the convergence experiments (`docs/experiments.md`)
 * and their gradient oracles: exact full gradients for measuring
 * ‖∇f(θ)‖² and f(θ) − f*, and the stochastic gradients the optimizers see.
 * Values and full gradients are computed in f64 from f32 parameters.
 *
 * @module
 */

import { normal, rng, studentT } from "../numeric/rng.ts";
import { solveSpd } from "./linalg.ts";

/** Read-only vector of parameters. */
export type Vec = ArrayLike<number>;

/**
 * A smooth objective with its exact gradient.
 *
 * @example
 * ```ts
 * import { Rosenbrock } from "./objectives.ts";
 * import type { Objective } from "./objectives.ts";
 * const f: Objective = new Rosenbrock();
 * console.log(f.dim, f.value([1, 1]), f.minimum); // 2 0 0
 * ```
 */
export interface Objective {
  /** Number of parameters. */
  readonly dim: number;
  /** f* when known (else undefined). */
  readonly minimum?: number;
  /** f(x). */
  value(x: Vec): number;
  /** ∇f(x), written into `out` (returned). */
  gradient(x: Vec, out?: Float64Array): Float64Array;
}

/** ‖v‖² in f64. */
export function squaredNorm(v: Vec): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  return s;
}

/**
 * ‖∇f(x)‖², the stationarity measure of the non-convex theory.
 *
 * @example
 * ```ts
 * import { gradientNormSq, NoisyQuadratic } from "./objectives.ts";
 * const f = new NoisyQuadratic({ target: new Float32Array([1, 1]), noisy: 1, noise: 5 });
 * console.log(gradientNormSq(f, [0, 0])); // 2
 * ```
 */
export function gradientNormSq(f: Objective, x: Vec): number {
  return squaredNorm(f.gradient(x));
}

/**
 * Reddi et al. (2018)'s online linear counterexample on [−1, 1]^d:
 * `f_t(x) = Σ_i g_{t,i}·x_i` with `g_{t,i} = spike` when
 * `(t + phase_i) mod period = 1`, else `−base`. With
 * `spike > (period − 1)·base` the average loss increases in every x_i, so
 * the optimum of the average (and the best fixed point in hindsight) is
 * x = −1. Coordinate i has phase `i mod period`, so in d dimensions the
 * spikes are spread over time and top-k has a choice to make.
 *
 * @example
 * ```ts
 * import { OnlineLinear } from "./objectives.ts";
 * const f = new OnlineLinear({ spike: 3, base: 1, period: 3, dim: 2 });
 * const g = new Float32Array(2);
 * console.log(Array.from(f.gradientAt(1, g)), f.meanGradient); // [ 3, -1 ] 0.3333333333333333
 * ```
 */
export class OnlineLinear {
  /** Gradient of the loss at a spike. */
  readonly spike: number;
  /** The loss is `−base·x` between spikes. */
  readonly base: number;
  /** Steps from one spike to the next. */
  readonly period: number;
  /** Number of coordinates. */
  readonly dim: number;

  /** @param o spike, base, period and dimension (default 1). */
  constructor(
    o: { spike: number; base: number; period: number; dim?: number },
  ) {
    this.spike = o.spike;
    this.base = o.base;
    this.period = o.period;
    this.dim = o.dim ?? 1;
  }

  /** The gradient of f_t (it does not depend on x), written into `out`. */
  gradientAt(t: number, out: Float32Array): Float32Array {
    for (let i = 0; i < this.dim; i++) {
      out[i] = (t + i) % this.period === 1 % this.period
        ? this.spike
        : -this.base;
    }
    return out;
  }

  /** The per-step average gradient `(spike − (period − 1)·base)/period` of every coordinate. */
  get meanGradient(): number {
    return (this.spike - (this.period - 1) * this.base) / this.period;
  }

  /** Average loss per step at x, minus its minimum over the box (0 at x = −1 when meanGradient > 0). */
  averageGap(x: Vec): number {
    let s = 0;
    const g = this.meanGradient;
    for (let i = 0; i < x.length; i++) s += g * x[i] + Math.abs(g);
    return s / x.length;
  }
}

/**
 * Reddi et al.'s stochastic counterexample: `f_t(x) = spike·x` with
 * probability `p`, else `−base·x`, on [−1, 1]. With `p·spike > (1 − p)·base`
 * the expected loss increases in x and its minimum is at x = −1.
 *
 * @example
 * ```ts
 * import { StochasticLinear } from "./objectives.ts";
 * const f = new StochasticLinear({ spike: 1010, base: 10, p: 0.01 });
 * console.log(f.meanGradient.toFixed(2)); // 0.20
 * ```
 */
export class StochasticLinear {
  /** Gradient at a spike. */
  readonly spike: number;
  /** Gradient is −base otherwise. */
  readonly base: number;
  /** Probability of a spike. */
  readonly p: number;

  /** @param o spike, base and spike probability. */
  constructor(o: { spike: number; base: number; p: number }) {
    this.spike = o.spike;
    this.base = o.base;
    this.p = o.p;
  }

  /** Expected gradient `p·spike − (1 − p)·base`. */
  get meanGradient(): number {
    return this.p * this.spike - (1 - this.p) * this.base;
  }

  /** Fills `out` with independent draws (one per coordinate: coordinates are independent runs). */
  sample(uniform: () => number, out: Float32Array): Float32Array {
    for (let i = 0; i < out.length; i++) {
      out[i] = uniform() < this.p ? this.spike : -this.base;
    }
    return out;
  }
}

/** A finite-sum objective `(1/n) Σ_i ℓ_i(x)` whose gradient can be sampled by minibatch. */
export interface FiniteSum extends Objective {
  /** Number of samples n. */
  readonly samples: number;
  /** Mean gradient over the samples `indices`, written into `out` (f32). */
  batchGradient(x: Vec, indices: ArrayLike<number>, out: Float32Array): void;
}

/**
 * A regression data set: rows `A` (n × d, row-major) and targets `b`.
 *
 * @example
 * ```ts
 * import { regressionData } from "./objectives.ts";
 * const { A, b, n, d } = regressionData({ n: 4, d: 3, seed: 1 });
 * console.log(A.length, b.length, n, d); // 12 4 4 3
 * ```
 */
export interface RegressionData {
  /** Rows, n × d, row-major. */
  A: Float64Array;
  /** Targets, n. */
  b: Float64Array;
  /** Samples. */
  n: number;
  /** Features. */
  d: number;
}

/**
 * Synthetic regression data: features i.i.d. Gaussian (or Student-t with 3
 * degrees of freedom for `tails: "heavy"`), scaled by 1/√d; targets
 * `A·x_true + 0.1·N(0, 1)`, and a fraction `outliers` of them replaced by
 * `5·N(0, 1)` (what a robust loss is for).
 */
export function regressionData(o: {
  n: number;
  d: number;
  seed: number;
  tails?: "gaussian" | "heavy";
  outliers?: number;
}): RegressionData {
  const u = rng(o.seed);
  const { n, d } = o;
  const heavy = o.tails === "heavy";
  const scale = 1 / Math.sqrt(d);
  const A = new Float64Array(n * d);
  for (let i = 0; i < A.length; i++) {
    A[i] = (heavy ? studentT(u, 3) : normal(u)) * scale;
  }
  const xTrue = Float64Array.from({ length: d }, () => normal(u));
  const b = new Float64Array(n);
  const outliers = o.outliers ?? 0;
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += A[i * d + j] * xTrue[j];
    b[i] = u() < outliers ? 5 * normal(u) : s + 0.1 * normal(u);
  }
  return { A, b, n, d };
}

/** Residual `a_iᵀx − b_i` of row i. */
function residual(data: RegressionData, x: Vec, i: number): number {
  const { A, b, d } = data;
  let s = -b[i];
  const o = i * d;
  for (let j = 0; j < d; j++) s += A[o + j] * x[j];
  return s;
}

/**
 * Robust regression with the Geman–McClure loss:
 * `f(x) = (1/n) Σ_i ρ(a_iᵀx − b_i)`, `ρ(r) = r²/(1 + r²)`. Smooth,
 * non-convex, with bounded gradients (|ρ'| ≤ 3√3/8).
 *
 * @example
 * ```ts
 * import { GemanMcClure, regressionData } from "./objectives.ts";
 * const f = new GemanMcClure(regressionData({ n: 50, d: 4, seed: 2 }));
 * console.log(f.value(new Float64Array(4)) > 0, f.samples); // true 50
 * ```
 */
export class GemanMcClure implements FiniteSum {
  /** The data. */
  readonly data: RegressionData;
  /** Features d. */
  readonly dim: number;
  /** Samples n. */
  readonly samples: number;

  /** @param data Rows and targets. */
  constructor(data: RegressionData) {
    this.data = data;
    this.dim = data.d;
    this.samples = data.n;
  }

  /** f(x). */
  value(x: Vec): number {
    let s = 0;
    for (let i = 0; i < this.samples; i++) {
      const r = residual(this.data, x, i);
      s += r * r / (1 + r * r);
    }
    return s / this.samples;
  }

  /** ∇f(x). */
  gradient(x: Vec, out = new Float64Array(this.dim)): Float64Array {
    out.fill(0);
    this.#accumulate(x, { length: this.samples }, out, true);
    for (let j = 0; j < this.dim; j++) out[j] /= this.samples;
    return out;
  }

  /** Mean gradient over the samples `indices`. */
  batchGradient(x: Vec, indices: ArrayLike<number>, out: Float32Array): void {
    const acc = new Float64Array(this.dim);
    this.#accumulate(x, indices, acc, false);
    for (let j = 0; j < this.dim; j++) out[j] = acc[j] / indices.length;
  }

  #accumulate(
    x: Vec,
    indices: ArrayLike<number>,
    acc: Float64Array,
    all: boolean,
  ): void {
    const { A, d } = this.data;
    for (let k = 0; k < indices.length; k++) {
      const i = all ? k : indices[k];
      const r = residual(this.data, x, i);
      const q = 1 + r * r;
      const w = 2 * r / (q * q);
      const o = i * d;
      for (let j = 0; j < d; j++) acc[j] += w * A[o + j];
    }
  }
}

/**
 * Least squares `f(x) = (1/2n)‖A·x − b‖²` with `n > d` (PL, with f* from
 * the normal equations).
 *
 * @example
 * ```ts
 * import { LeastSquares, regressionData } from "./objectives.ts";
 * const f = new LeastSquares(regressionData({ n: 40, d: 3, seed: 3 }));
 * console.log(Math.abs(f.value(f.solution) - f.minimum) < 1e-12); // true
 * ```
 */
export class LeastSquares implements FiniteSum {
  /** The data. */
  readonly data: RegressionData;
  /** Features d. */
  readonly dim: number;
  /** Samples n. */
  readonly samples: number;
  /** The minimizer (normal equations, f64). */
  readonly solution: Float64Array;
  /** f* = f(solution). */
  readonly minimum: number;

  /** @param data Rows and targets (n > d, full column rank). */
  constructor(data: RegressionData) {
    this.data = data;
    this.dim = data.d;
    this.samples = data.n;
    const { A, b, n, d } = data;
    const G = new Float64Array(d * d);
    const h = new Float64Array(d);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < d; j++) {
        const aij = A[i * d + j];
        h[j] += aij * b[i];
        for (let k = 0; k <= j; k++) G[j * d + k] += aij * A[i * d + k];
      }
    }
    for (let j = 0; j < d; j++) {
      for (let k = 0; k < j; k++) G[k * d + j] = G[j * d + k];
    }
    this.solution = solveSpd(G, h, d);
    this.minimum = this.value(this.solution);
  }

  /** f(x). */
  value(x: Vec): number {
    let s = 0;
    for (let i = 0; i < this.samples; i++) s += residual(this.data, x, i) ** 2;
    return s / (2 * this.samples);
  }

  /** ∇f(x) = (1/n) Aᵀ(A·x − b). */
  gradient(x: Vec, out = new Float64Array(this.dim)): Float64Array {
    out.fill(0);
    const { A, d } = this.data;
    for (let i = 0; i < this.samples; i++) {
      const r = residual(this.data, x, i);
      for (let j = 0; j < d; j++) out[j] += r * A[i * d + j];
    }
    for (let j = 0; j < d; j++) out[j] /= this.samples;
    return out;
  }

  /** Mean gradient over the samples `indices`. */
  batchGradient(x: Vec, indices: ArrayLike<number>, out: Float32Array): void {
    const { A, d } = this.data;
    const acc = new Float64Array(d);
    for (let k = 0; k < indices.length; k++) {
      const i = indices[k];
      const r = residual(this.data, x, i);
      for (let j = 0; j < d; j++) acc[j] += r * A[i * d + j];
    }
    for (let j = 0; j < d; j++) out[j] = acc[j] / indices.length;
  }
}

/**
 * `f(x) = Σ_i x_i² + 3 sin² x_i`: non-convex, satisfies the PL inequality
 * (Karimi et al. 2016), minimum 0 at x = 0.
 *
 * @example
 * ```ts
 * import { SinePL } from "./objectives.ts";
 * const f = new SinePL(3);
 * console.log(f.value([0, 0, 0]), f.minimum); // 0 0
 * ```
 */
export class SinePL implements Objective {
  /** Number of parameters. */
  readonly dim: number;
  /** f* = 0. */
  readonly minimum = 0;

  /** @param dim Number of parameters. */
  constructor(dim: number) {
    this.dim = dim;
  }

  /** f(x). */
  value(x: Vec): number {
    let s = 0;
    for (let i = 0; i < x.length; i++) s += x[i] ** 2 + 3 * Math.sin(x[i]) ** 2;
    return s;
  }

  /** ∇f(x) = 2x + 3 sin 2x. */
  gradient(x: Vec, out = new Float64Array(this.dim)): Float64Array {
    for (let i = 0; i < x.length; i++) {
      out[i] = 2 * x[i] + 3 * Math.sin(2 * x[i]);
    }
    return out;
  }
}

/**
 * `f(x) = ½‖x − x*‖²` seen through an oracle that adds bounded noise
 * (uniform on [−noise, noise]) to the first `noisy` coordinates and none to
 * the rest: the setting where top-k without error feedback keeps picking the
 * noisy coordinates and never moves the quiet ones.
 *
 * @example
 * ```ts
 * import { NoisyQuadratic } from "./objectives.ts";
 * import { rng } from "../numeric/rng.ts";
 * const f = new NoisyQuadratic({ target: new Float32Array([1, 1]), noisy: 1, noise: 5 });
 * const g = new Float32Array(2);
 * f.sample(new Float32Array(2), rng(1), g);
 * console.log(g[1], Math.abs(g[0] + 1) <= 5); // -1 true
 * ```
 */
export class NoisyQuadratic implements Objective {
  /** x*. */
  readonly target: Float32Array;
  /** Coordinates 0..noisy−1 carry noise. */
  readonly noisy: number;
  /** Half-width of the uniform noise. */
  readonly noise: number;
  /** Number of parameters. */
  readonly dim: number;
  /** f* = 0. */
  readonly minimum = 0;

  /** @param o x*, how many leading coordinates are noisy, the noise's half-width. */
  constructor(o: { target: Float32Array; noisy: number; noise: number }) {
    this.target = o.target;
    this.noisy = o.noisy;
    this.noise = o.noise;
    this.dim = o.target.length;
  }

  /** f(x). */
  value(x: Vec): number {
    let s = 0;
    for (let i = 0; i < this.dim; i++) s += (x[i] - this.target[i]) ** 2;
    return s / 2;
  }

  /** ∇f(x) = x − x*. */
  gradient(x: Vec, out = new Float64Array(this.dim)): Float64Array {
    for (let i = 0; i < this.dim; i++) out[i] = x[i] - this.target[i];
    return out;
  }

  /** Draws the noise of one step into `out` (zeros on the quiet coordinates). */
  drawNoise(uniform: () => number, out: Float32Array): Float32Array {
    for (let i = 0; i < this.dim; i++) {
      out[i] = i < this.noisy ? (2 * uniform() - 1) * this.noise : 0;
    }
    return out;
  }

  /** A stochastic gradient: `f32(f32(x − x*) + noise)`, the order the GPU oracle uses. */
  sample(x: Vec, uniform: () => number, out: Float32Array): Float32Array {
    this.drawNoise(uniform, out);
    for (let i = 0; i < this.dim; i++) {
      out[i] = Math.fround(Math.fround(x[i] - this.target[i]) + out[i]);
    }
    return out;
  }
}

/**
 * Rosenbrock's function `(a − x)² + b(y − x²)²`, minimum 0 at (a, a²).
 *
 * @example
 * ```ts
 * import { Rosenbrock } from "./objectives.ts";
 * const f = new Rosenbrock();
 * console.log(Array.from(f.gradient([0, 0]))); // [ -2, 0 ]
 * ```
 */
export class Rosenbrock implements Objective {
  /** Two parameters. */
  readonly dim = 2;
  /** f* = 0. */
  readonly minimum = 0;
  /** Position of the minimum (a, a²). */
  readonly a: number;
  /** Curvature of the valley. */
  readonly b: number;

  /** @param a Minimum at (a, a²). @param b Valley steepness. */
  constructor(a = 1, b = 100) {
    this.a = a;
    this.b = b;
  }

  /** f(x, y). */
  value(x: Vec): number {
    return (this.a - x[0]) ** 2 + this.b * (x[1] - x[0] ** 2) ** 2;
  }

  /** ∇f. */
  gradient(x: Vec, out = new Float64Array(2)): Float64Array {
    const w = x[1] - x[0] ** 2;
    out[0] = -2 * (this.a - x[0]) - 4 * this.b * x[0] * w;
    out[1] = 2 * this.b * w;
    return out;
  }
}
