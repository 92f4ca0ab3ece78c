/**
 * Seeded pseudo-random numbers (mulberry32), so an experiment or a test can
 * be replayed exactly: uniforms, and normal and Student-t draws built on them.
 * Used by the stochastic-rounding error feedback of the ablations, by the
 * experiments' data and noise, and by the tests.
 *
 * @module
 */

/**
 * A generator of uniform numbers in [0, 1) from `seed` (mulberry32: 32 bits
 * of state, period 2^32, good enough for simulations, not for secrets).
 *
 * @example
 * ```ts
 * import { rng } from "./rng.ts";
 * const a = rng(7);
 * const b = rng(7);
 * console.log(a() === b(), a() < 1); // true true
 * ```
 */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A standard normal draw from `uniform` (Box–Muller; one of the pair is
 * discarded, so every draw costs two uniforms and no state is hidden).
 *
 * @example
 * ```ts
 * import { normal, rng } from "./rng.ts";
 * const u = rng(1);
 * let s = 0;
 * for (let i = 0; i < 10000; i++) s += normal(u);
 * console.log(Math.abs(s / 10000) < 0.05); // true
 * ```
 */
export function normal(uniform: () => number): number {
  const u1 = 1 - uniform(); // in (0, 1]: log stays finite
  const u2 = uniform();
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

/**
 * A Student-t draw with `nu` degrees of freedom (heavy tails: moments of
 * order ≥ ν do not exist), as `Z / sqrt(χ²_ν / ν)` with χ² from `nu` normal
 * squares (`nu` an integer ≥ 1).
 *
 * @example
 * ```ts
 * import { rng, studentT } from "./rng.ts";
 * const u = rng(3);
 * const draws = Array.from({ length: 2000 }, () => studentT(u, 2));
 * console.log(draws.some((x) => Math.abs(x) > 10)); // true (heavy tails)
 * ```
 */
export function studentT(uniform: () => number, nu: number): number {
  let chi = 0;
  for (let i = 0; i < nu; i++) chi += normal(uniform) ** 2;
  return normal(uniform) / Math.sqrt(chi / nu);
}
