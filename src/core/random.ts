/**
 * A seeded pseudo-random generator for everything a training run draws
 * (initial weights, data order, synthetic data): xoshiro128** (Blackman and
 * Vigna), seeded through splitmix32 from a seed and a stream number, so that
 * independent streams of one seed never share a sequence and a run is a pure
 * function of its seed.
 *
 * @module
 */

import { InvalidOptionError } from "../errors.ts";

function splitmix32(state: { s: number }): number {
  state.s = (state.s + 0x9e3779b9) >>> 0;
  let z = state.s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;

/** xoshiro128**: uniform u32s, floats in [0, 1), integers below a bound, permutations. */
export class Random {
  readonly #s = new Uint32Array(4);

  /**
   * A generator for `seed` (any u32) and `stream` (any u32; independent
   * sequences of one seed).
   *
   * @example
   * ```ts
   * import { Random } from "./random.ts";
   * const a = new Random(7, 1).nextU32();
   * console.log(a === new Random(7, 1).nextU32(), a === new Random(7, 2).nextU32()); // true false
   * ```
   */
  constructor(seed: number, stream = 0) {
    for (const [k, v] of [["seed", seed], ["stream", stream]] as const) {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
        throw new InvalidOptionError(
          `Random ${k}: expected an integer in [0, 2^32), got ${v}`,
        );
      }
    }
    const state = { s: seed >>> 0 };
    const mixed = splitmix32(state) ^ Math.imul(stream, 0x27d4eb2d);
    const st = { s: mixed >>> 0 };
    for (let i = 0; i < 4; i++) this.#s[i] = splitmix32(st);
    if (this.#s.every((x) => x === 0)) this.#s[0] = 1; // the one bad state
  }

  /** The next uniform u32. */
  nextU32(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** A uniform float in [0, 1) with 32 random bits. */
  next(): number {
    return this.nextU32() / 4294967296;
  }

  /** A uniform integer in [0, n), n ≤ 2^32 (Lemire's multiply, unbiased by rejection). */
  int(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 4294967296) {
      throw new InvalidOptionError(
        `Random.int: expected a bound in [1, 2^32], got ${n}`,
      );
    }
    const threshold = (4294967296 - n) % n;
    for (;;) {
      // The 64-bit product x·n in exact pieces below 2^53: x·n = hi·2^32 + lo.
      const x = this.nextU32();
      const a = Math.floor(x / 65536) * n;
      const rest = (a % 65536) * 65536 + (x % 65536) * n;
      const lo = rest % 4294967296;
      if (lo >= threshold) {
        return Math.floor(a / 65536) + Math.floor(rest / 4294967296);
      }
    }
  }

  /** A standard normal value (Box–Muller, one of the pair). */
  normal(): number {
    const u = (this.nextU32() + 0.5) / 4294967296;
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /**
   * A uniformly random permutation of 0..n-1 (Fisher–Yates).
   *
   * @example
   * ```ts
   * import { Random } from "./random.ts";
   * const p = new Random(1).permutation(5);
   * console.log([...p].sort(), p.length); // [ 0, 1, 2, 3, 4 ] 5
   * ```
   */
  permutation(n: number): Uint32Array<ArrayBuffer> {
    const p = new Uint32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = p[i];
      p[i] = p[j];
      p[j] = t;
    }
    return p;
  }
}
