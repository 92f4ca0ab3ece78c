/**
 * Checks of a state's values, beyond its sizes: a checkpoint with a valid
 * checksum can still hold what no step could have produced (a NaN moment, a
 * negative second moment, an EF range with min above max, a window index
 * outside its block), and loading it would poison every later step. CPU and
 * GPU twins run the same checks, before anything is written.
 *
 * @module
 */

import { CheckpointError } from "../errors.ts";
import {
  blockK,
  blockLength,
  blockWindowOffset,
  type MicroAdamGeometry,
} from "./geometry.ts";
import type { OptimizerState } from "./state.ts";

function f32View(bytes: Uint8Array): Float32Array {
  if (bytes.byteOffset % 4 === 0) {
    return new Float32Array(
      bytes.buffer,
      bytes.byteOffset,
      bytes.byteLength >> 2,
    );
  }
  return new Float32Array(bytes.slice().buffer, 0, bytes.byteLength >> 2);
}

/**
 * A state buffer's bytes (as in a state dict) as u32 words: a view when they
 * are 4-byte aligned, else a copy. Read it; do not write through it.
 *
 * @example
 * ```ts
 * import { u32View } from "./state_checks.ts";
 * const bytes = new Uint8Array([1, 0, 0, 0, 2, 1, 0, 0]);
 * console.log(Array.from(u32View(bytes))); // [ 1, 258 ]
 * console.log(Array.from(u32View(bytes.subarray(4)))); // [ 258 ]
 * ```
 */
export function u32View(bytes: Uint8Array): Uint32Array {
  if (bytes.byteOffset % 4 === 0) {
    return new Uint32Array(
      bytes.buffer,
      bytes.byteOffset,
      bytes.byteLength >> 2,
    );
  }
  return new Uint32Array(bytes.slice().buffer, 0, bytes.byteLength >> 2);
}

const label = (s: OptimizerState, i: number) =>
  `tensor ${i} ("${s.tensors[i].name}")`;

/**
 * Throws {@link CheckpointError} unless every f32 of `buffer` in every tensor
 * is finite (and, with `nonNegative`, ≥ 0).
 *
 * @example
 * ```ts
 * import { checkF32Buffer } from "./state_checks.ts";
 * const state = { optimizer: "Adam", config: {}, step: 1, calls: 1, skipped: 0, ring: 0,
 *   tensors: [{ name: "w", length: 1, buffers: { expAvgSq: new Uint8Array(new Float32Array([-1]).buffer) } }] };
 * try { checkF32Buffer(state, "expAvgSq", true); } catch (e) { console.log((e as Error).message); }
 * ```
 */
export function checkF32Buffer(
  state: OptimizerState,
  buffer: string,
  nonNegative = false,
): void {
  state.tensors.forEach((t, i) => {
    const v = f32View(t.buffers[buffer]);
    for (let j = 0; j < v.length; j++) {
      const x = v[j];
      if (!Number.isFinite(x) || (nonNegative && x < 0)) {
        throw new CheckpointError(
          `${
            label(state, i)
          }: state buffer "${buffer}" holds ${x} at element ${j}; expected a finite number${
            nonNegative ? " >= 0" : ""
          } (no step produces it: the state is damaged or crafted)`,
        );
      }
    }
  });
}

/** Throws {@link CheckpointError} unless `state.ring` is `expected`. */
function checkRing(state: OptimizerState, expected: number, why: string) {
  if (state.ring !== expected) {
    throw new CheckpointError(
      `ring: expected ${expected} (${why}), got ${state.ring}`,
    );
  }
}

/**
 * The values of an Adam, AdamW or AMSGrad state: finite moments, second
 * moments (and their maximum) ≥ 0, ring 0.
 *
 * @example
 * ```ts
 * import { checkAdamState } from "./state_checks.ts";
 * const zeros = () => new Uint8Array(8);
 * checkAdamState({ optimizer: "Adam", config: {}, step: 1, calls: 1, skipped: 0, ring: 0,
 *   tensors: [{ name: "w", length: 2, buffers: { expAvg: zeros(), expAvgSq: zeros() } }] }); // fine
 * ```
 */
export function checkAdamState(state: OptimizerState): void {
  checkRing(state, 0, "Adam keeps no window");
  checkF32Buffer(state, "expAvg");
  checkF32Buffer(state, "expAvgSq", true);
  if (state.tensors.some((t) => "maxExpAvgSq" in t.buffers)) {
    checkF32Buffer(state, "maxExpAvgSq", true);
  }
}

const bf16Finite = (bits: number) => (bits & 0x7f80) !== 0x7f80;
const bf16Value = (bits: number) => {
  const f = new Float32Array(new Uint32Array([(bits & 0xffff) << 16]).buffer);
  return f[0];
};

/**
 * Throws {@link CheckpointError} unless every EF statistics word (bf16 min |
 * bf16 max << 16) of buffer `stats` is finite with min ≤ max.
 */
export function checkBf16Stats(state: OptimizerState): void {
  state.tensors.forEach((t, i) => {
    const w = u32View(t.buffers.stats);
    for (let q = 0; q < w.length; q++) {
      const mn = w[q] & 0xffff;
      const mx = w[q] >>> 16;
      if (!bf16Finite(mn) || !bf16Finite(mx) || bf16Value(mn) > bf16Value(mx)) {
        throw new CheckpointError(
          `${label(state, i)}: EF block ${q} has min ${bf16Value(mn)} and max ${
            bf16Value(mx)
          }; expected finite values with min <= max (the state is damaged or crafted)`,
        );
      }
    }
  });
}

/**
 * Checks what sizes alone cannot in a MicroAdam state: the ring position
 * follows the step count, every window index lies inside its block (the
 * moments are rebuilt by scattering through them), the rows the next step
 * reads hold distinct indices (a top-k row does; the GPU update places each
 * entry by its index and slot), every window value is a finite bf16, and
 * every EF range is finite with min ≤ max.
 *
 * @example
 * ```ts
 * import { microAdamGeometry } from "./geometry.ts";
 * import { checkMicroAdamState } from "./state_checks.ts";
 * const g = microAdamGeometry(4, { window: 2, density: 0.5, topkBlockSize: 4, efBlockSize: 2 });
 * const state = { optimizer: "MicroAdam", config: {}, step: 0, calls: 0, skipped: 0, ring: 0,
 *   tensors: [{ name: "w", length: 4, buffers: { window: new Uint8Array(16), codes: new Uint8Array(4), stats: new Uint8Array(12) } }] };
 * checkMicroAdamState(state, [g]); // fine: a fresh state, all zero
 * ```
 */
export function checkMicroAdamState(
  state: OptimizerState,
  geometry: readonly MicroAdamGeometry[],
): void {
  checkMicroAdamWindow(state, geometry);
  checkBf16Stats(state);
}

/**
 * The window part of {@link checkMicroAdamState}: the ring position follows
 * the step count, every index lies inside its block, the rows in use (the
 * first min(step, m)) hold distinct indices, every value is a finite bf16.
 */
export function checkMicroAdamWindow(
  state: OptimizerState,
  geometry: readonly MicroAdamGeometry[],
): void {
  const m = geometry[0]?.window ?? 1;
  checkRing(state, state.step % m, "step mod window");
  const rows = Math.min(state.step, m);
  geometry.forEach((g, i) => {
    const win = u32View(state.tensors[i].buffers.window);
    // seen[index] = the row (numbered over the tensor, from 1) that last held it.
    const seen = new Uint32Array(g.blockSize);
    let row = 0;
    for (let blk = 0; blk < g.blocks; blk++) {
      const len = blockLength(g, blk);
      const k = blockK(g, blk);
      for (let slot = 0; slot < g.window; slot++) {
        row++;
        const first = blockWindowOffset(g, blk) + slot * k;
        for (let e = first; e < first + k; e++) {
          const index = win[e] & 0xffff;
          if (index >= len) {
            throw new CheckpointError(
              `${
                label(state, i)
              }: window entry ${e} has index ${index}, outside its block of ${len} elements`,
            );
          }
          if (!bf16Finite(win[e] >>> 16)) {
            throw new CheckpointError(
              `${label(state, i)}: window entry ${e} holds ${
                bf16Value(win[e] >>> 16)
              }; expected a finite value (the state is damaged or crafted)`,
            );
          }
          if (slot < rows) {
            if (seen[index] === row) {
              throw new CheckpointError(
                `${
                  label(state, i)
                }: window entry ${e} repeats index ${index} within its row (slot ${slot} of block ${blk}); expected distinct indices, as a top-k row holds (the state is damaged or crafted)`,
              );
            }
            seen[index] = row;
          }
        }
      }
    }
  });
}

/**
 * Throws {@link CheckpointError} unless buffer `buffer` of every tensor holds
 * finite f32 `[min, max]` pairs with min ≤ max (an EF quantizer kept in f32).
 */
export function checkF32Ranges(state: OptimizerState, buffer: string): void {
  checkF32Buffer(state, buffer);
  state.tensors.forEach((t, i) => {
    const v = f32View(t.buffers[buffer]);
    for (let q = 0; 2 * q + 1 < v.length; q++) {
      if (v[2 * q] > v[2 * q + 1]) {
        throw new CheckpointError(
          `${label(state, i)}: EF block ${q} has min ${v[2 * q]} above max ${
            v[2 * q + 1]
          } (the state is damaged or crafted)`,
        );
      }
    }
  });
}
