/**
 * Grids for sweeps and phase diagrams: log-spaced hyperparameter grids, the
 * cartesian product of named axes, and the argmin of a score over a grid
 * (how every optimizer's lr and ε are tuned, on the same grid and budget).
 *
 * @module
 */

import { InvalidOptionError } from "../errors.ts";

/**
 * `perDecade` log-spaced values from `lo` to `hi` (both included, rounded
 * to 3 significant digits).
 *
 * @example
 * ```ts
 * import { logGrid } from "./grid.ts";
 * console.log(logGrid(1e-3, 1, 1)); // [ 0.001, 0.01, 0.1, 1 ]
 * ```
 */
export function logGrid(lo: number, hi: number, perDecade: number): number[] {
  if (!(lo > 0 && hi >= lo && perDecade > 0)) {
    throw new InvalidOptionError(
      `logGrid: expected 0 < lo <= hi and perDecade > 0, got lo ${lo}, hi ${hi}, perDecade ${perDecade}`,
    );
  }
  const n = Math.round(Math.log10(hi / lo) * perDecade);
  return Array.from(
    { length: n + 1 },
    (_, i) => Number((lo * 10 ** (i / perDecade)).toPrecision(3)),
  );
}

/**
 * Every combination of the axes' values, as objects (the first axis varies
 * slowest).
 *
 * @example
 * ```ts
 * import { cartesian } from "./grid.ts";
 * console.log(cartesian({ a: [1, 2], b: ["x", "y"] }).length); // 4
 * console.log(cartesian({ a: [1, 2], b: ["x", "y"] })[1]); // { a: 1, b: "y" }
 * ```
 */
export function cartesian<T extends Record<string, readonly unknown[]>>(
  axes: T,
): { [K in keyof T]: T[K][number] }[] {
  let out: Record<string, unknown>[] = [{}];
  for (const [key, values] of Object.entries(axes)) {
    out = out.flatMap((o) => values.map((v) => ({ ...o, [key]: v })));
  }
  return out as { [K in keyof T]: T[K][number] }[];
}

/** The result of {@link argmin}. */
export interface Tuned<T> {
  /** The grid point with the lowest score. */
  best: T;
  /** Its score. */
  score: number;
  /** Every grid point with its score (NaN and ±Infinity count as worst). */
  all: { point: T; score: number }[];
}

/**
 * Scores every grid point and returns the lowest (a non-finite score, a
 * diverged run, never wins).
 *
 * @example
 * ```ts
 * import { argmin } from "./grid.ts";
 * console.log(argmin([1, 2, 3, 4], (x) => (x - 3) ** 2).best); // 3
 * ```
 */
export function argmin<T>(
  grid: readonly T[],
  score: (point: T) => number,
): Tuned<T> {
  if (grid.length === 0) {
    throw new InvalidOptionError("argmin: expected a non-empty grid, got none");
  }
  const all = grid.map((point) => ({ point, score: score(point) }));
  let best = all[0];
  for (const c of all) {
    const s = Number.isFinite(c.score) ? c.score : Infinity;
    const b = Number.isFinite(best.score) ? best.score : Infinity;
    if (s < b) best = c;
  }
  return { best: best.point, score: best.score, all };
}
