/**
 * Statistics for the experiments' verdicts: means, quantiles, least-squares
 * line fits (log–log slopes for rates) and percentile bootstrap intervals
 * over seeds.
 *
 * @module
 */

import { InvalidOptionError } from "../errors.ts";
import { rng } from "../numeric/rng.ts";

/**
 * Arithmetic mean.
 *
 * @example
 * ```ts
 * import { mean } from "./stats.ts";
 * console.log(mean([1, 2, 6])); // 3
 * ```
 */
export function mean(xs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i];
  return s / xs.length;
}

/**
 * Geometric mean (of positive numbers): the mean on a log scale, what rates
 * and ratios are averaged with.
 *
 * @example
 * ```ts
 * import { geometricMean } from "./stats.ts";
 * console.log(geometricMean([1, 100])); // 10
 * ```
 */
export function geometricMean(xs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += Math.log(xs[i]);
  return Math.exp(s / xs.length);
}

/**
 * The `p`-quantile (0 ≤ p ≤ 1) of `xs`, linearly interpolated between order
 * statistics (type 7, as numpy's default).
 *
 * @example
 * ```ts
 * import { quantile } from "./stats.ts";
 * console.log(quantile([3, 1, 2, 4], 0.5)); // 2.5
 * ```
 */
export function quantile(xs: ArrayLike<number>, p: number): number {
  const s = Float64Array.from(xs).sort();
  const h = (s.length - 1) * p;
  const lo = Math.floor(h);
  const hi = Math.min(s.length - 1, lo + 1);
  return s[lo] + (h - lo) * (s[hi] - s[lo]);
}

/** A fitted line `y = intercept + slope·x`. */
export interface LineFit {
  /** Slope. */
  slope: number;
  /** Intercept. */
  intercept: number;
  /** Coefficient of determination R². */
  r2: number;
}

/**
 * Ordinary least-squares line through `(x_i, y_i)`.
 *
 * @throws {InvalidOptionError} for fewer than two points, unequal lengths or constant x.
 *
 * @example
 * ```ts
 * import { fitLine } from "./stats.ts";
 * console.log(fitLine([0, 1, 2], [1, 3, 5])); // { slope: 2, intercept: 1, r2: 1 }
 * ```
 */
export function fitLine(x: ArrayLike<number>, y: ArrayLike<number>): LineFit {
  if (x.length !== y.length || x.length < 2) {
    throw new InvalidOptionError(
      `fitLine: expected two arrays of equal length >= 2, got ${x.length} and ${y.length}`,
    );
  }
  const mx = mean(x);
  const my = mean(y);
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (let i = 0; i < x.length; i++) {
    sxx += (x[i] - mx) ** 2;
    sxy += (x[i] - mx) * (y[i] - my);
    syy += (y[i] - my) ** 2;
  }
  if (sxx === 0) {
    throw new InvalidOptionError(
      "fitLine: expected x values that differ, got all equal",
    );
  }
  const slope = sxy / sxx;
  return {
    slope,
    intercept: my - slope * mx,
    r2: syy === 0 ? 1 : (sxy * sxy) / (sxx * syy),
  };
}

/**
 * The slope of `log y` against `log x`: the exponent of a power law
 * `y ≈ C·x^slope`, with `C = exp(intercept)`.
 *
 * @example
 * ```ts
 * import { logLogFit } from "./stats.ts";
 * const T = [256, 1024, 4096];
 * console.log(logLogFit(T, T.map((t) => 3 / Math.sqrt(t))).slope.toFixed(6)); // -0.500000
 * ```
 */
export function logLogFit(x: ArrayLike<number>, y: ArrayLike<number>): LineFit {
  return fitLine(
    Array.from(x, Math.log),
    Array.from(y, Math.log),
  );
}

/** A point estimate with a confidence interval. */
export interface Interval {
  /** The statistic on the full sample. */
  estimate: number;
  /** Lower end. */
  lo: number;
  /** Upper end. */
  hi: number;
}

/** Options of {@link bootstrap}. */
export interface BootstrapOptions {
  /** Resamples drawn. @default {2000} */
  resamples?: number;
  /** Coverage of the interval. @default {0.95} */
  level?: number;
  /** Seed of the resampling. @default {0} */
  seed?: number;
}

/**
 * Percentile bootstrap: `statistic` on the full sample of `n` units (e.g.
 * seeds) and on `resamples` resamples drawn with replacement; the interval
 * is the `(1 ± level)/2` quantiles of the resampled statistics.
 *
 * @param n Number of units.
 * @param statistic Computes the statistic from the indices of a (re)sample.
 *
 * @example
 * ```ts
 * import { bootstrap, mean } from "./stats.ts";
 * const xs = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
 * const ci = bootstrap(xs.length, (idx) => mean(idx.map((i) => xs[i])), { seed: 1 });
 * console.log(ci.estimate, ci.lo > 3, ci.hi < 8); // 5.5 true true
 * ```
 */
export function bootstrap(
  n: number,
  statistic: (indices: number[]) => number,
  o: BootstrapOptions = {},
): Interval {
  const resamples = o.resamples ?? 2000;
  const level = o.level ?? 0.95;
  if (!Number.isInteger(n) || n < 1) {
    throw new InvalidOptionError(
      `bootstrap: expected n >= 1 units, got ${n}`,
    );
  }
  if (!(level > 0 && level < 1)) {
    throw new InvalidOptionError(
      `bootstrap: expected level in (0, 1), got ${level}`,
    );
  }
  const u = rng(o.seed ?? 0);
  const all = Array.from({ length: n }, (_, i) => i);
  const stats = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    const idx = all.map(() => Math.floor(u() * n));
    stats[r] = statistic(idx);
  }
  return {
    estimate: statistic(all),
    lo: quantile(stats, (1 - level) / 2),
    hi: quantile(stats, (1 + level) / 2),
  };
}
