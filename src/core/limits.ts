/**
 * The bounds every optimizer, CPU or GPU, enforces alike: what the GPU's
 * storage types can hold, and how large a gradient may be before the
 * arithmetic of a step could overflow f32.
 *
 * @module
 */

/**
 * The most steps, calls or skips an optimizer counts: the GPU keeps its
 * counters as u32, and the CPU twins stop at the same point, so a state
 * moves between them without wrapping. A `step()` past it, or a state
 * beyond it, is refused.
 */
export const MAX_COUNT = 0xffffffff;

/**
 * log2 of the largest gradient magnitude a step accepts. A gradient element
 * with |g| ≥ 2^60 (≈ 1.15e18) is treated like NaN or ±Infinity: the whole step
 * is skipped (or, with `nonFinite: "error"`, reported). Below it no
 * intermediate of any optimizer overflows f32: Adam's g² stays under 2^120,
 * and MicroAdam's error-corrected gradient, its EF range and its window sums
 * keep ample headroom (m · (2^61)² < 2^128 for m ≤ 64), so CPU and GPU twins
 * agree under extreme inputs instead of producing NaN.
 */
export const GRADIENT_LIMIT_LOG2 = 60;

/** Largest top-k block: block-local indices are stored as u16. */
export const MAX_TOPK_BLOCK = 65536;
