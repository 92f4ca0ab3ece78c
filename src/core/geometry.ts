import { CheckpointError } from "../errors.ts";
import type { OptimizerState } from "./state.ts";

/**
 * The block structure of one MicroAdam tensor: top-k blocks, window row
 * layout and EF quantization blocks. CPU reference and GPU kernels both use
 * it, so their state buffers have the same layout.
 *
 * Window layout is block-major: block `b` owns `window × k_b` consecutive
 * entries (row `slot` of block `b` at `blockOffset(b) + slot × k_b`). A range
 * of blocks therefore owns one contiguous range of the window for all slots,
 * which is what lets a huge tensor be split across several buffer bindings.
 *
 * @module
 */

/** Shape parameters of the MicroAdam state. */
export interface MicroAdamShape {
  /** Window length m. */
  window: number;
  /** Fraction of each top-k block kept. */
  density: number;
  /** Top-k block size D. */
  topkBlockSize: number;
  /** EF quantization block size Q. */
  efBlockSize: number;
}

/** Derived sizes of one tensor's MicroAdam state. */
export interface MicroAdamGeometry {
  /** Elements in the tensor (d). */
  length: number;
  /** Window length m. */
  window: number;
  /** Size of a full top-k block: `min(D, d)`. */
  blockSize: number;
  /** Number of full blocks. */
  fullBlocks: number;
  /** Size of the tail block (0 when there is none). */
  tail: number;
  /** Entries kept per full block: `ceil(blockSize × density)`. */
  kBlock: number;
  /** Entries kept in the tail block (0 when there is none). */
  kTail: number;
  /** Number of blocks, tail included. */
  blocks: number;
  /** Entries in one window row (k). */
  rowEntries: number;
  /** Entries in the whole window: `window × rowEntries`. */
  windowEntries: number;
  /** u32 words of 4-bit EF codes: `ceil(d / 8)`. */
  codeWords: number;
  /** EF statistics pairs: `floor(d / Q) + 1`. */
  efBlocks: number;
  /** EF quantization block size Q. */
  efBlockSize: number;
}

/**
 * Computes the geometry of a tensor of `length` elements.
 *
 * @example
 * ```ts
 * import { microAdamGeometry } from "./geometry.ts";
 * const g = microAdamGeometry(70001, { window: 10, density: 0.01, topkBlockSize: 29056, efBlockSize: 100000 });
 * console.log(g.fullBlocks, g.tail, g.kBlock, g.kTail, g.rowEntries); // 2 11889 291 119 701
 * ```
 */
export function microAdamGeometry(
  length: number,
  shape: MicroAdamShape,
): MicroAdamGeometry {
  const D = shape.topkBlockSize;
  const blockSize = Math.min(D, length);
  const fullBlocks = Math.floor(length / blockSize);
  const tail = length - fullBlocks * blockSize;
  const kBlock = Math.ceil(blockSize * shape.density);
  const kTail = tail > 0 ? Math.ceil(tail * shape.density) : 0;
  const rowEntries = fullBlocks * kBlock + kTail;
  return {
    length,
    window: shape.window,
    blockSize,
    fullBlocks,
    tail,
    kBlock,
    kTail,
    blocks: fullBlocks + (tail > 0 ? 1 : 0),
    rowEntries,
    windowEntries: shape.window * rowEntries,
    codeWords: Math.ceil(length / 8),
    efBlocks: Math.floor(length / shape.efBlockSize) + 1,
    efBlockSize: shape.efBlockSize,
  };
}

/**
 * Entries kept in block `b`.
 *
 * @example
 * ```ts
 * import { blockK, microAdamGeometry } from "./geometry.ts";
 * const g = microAdamGeometry(10, { window: 2, density: 0.5, topkBlockSize: 4, efBlockSize: 2 });
 * console.log(blockK(g, 0), blockK(g, 2)); // 2 1
 * ```
 */
export function blockK(g: MicroAdamGeometry, b: number): number {
  return b < g.fullBlocks ? g.kBlock : g.kTail;
}

/**
 * Elements in block `b`.
 *
 * @example
 * ```ts
 * import { blockLength, microAdamGeometry } from "./geometry.ts";
 * const g = microAdamGeometry(10, { window: 2, density: 0.5, topkBlockSize: 4, efBlockSize: 2 });
 * console.log(blockLength(g, 1), blockLength(g, 2)); // 4 2
 * ```
 */
export function blockLength(g: MicroAdamGeometry, b: number): number {
  return b < g.fullBlocks ? g.blockSize : g.tail;
}

/**
 * First window entry of block `b` (its slot-0 row starts here).
 *
 * @example
 * ```ts
 * import { blockWindowOffset, microAdamGeometry } from "./geometry.ts";
 * const g = microAdamGeometry(10, { window: 2, density: 0.5, topkBlockSize: 4, efBlockSize: 2 });
 * console.log(blockWindowOffset(g, 2)); // 8
 * ```
 */
export function blockWindowOffset(g: MicroAdamGeometry, b: number): number {
  return b * g.window * g.kBlock;
}

/**
 * Checks what sizes alone cannot in a MicroAdam state: the ring position
 * follows the step count, and every window index lies inside its block (a
 * crafted or damaged state could otherwise scatter into other blocks).
 * Throws {@link CheckpointError}.
 *
 * @example
 * ```ts
 * import { checkMicroAdamState, microAdamGeometry } from "./geometry.ts";
 * const g = microAdamGeometry(4, { window: 2, density: 0.5, topkBlockSize: 4, efBlockSize: 2 });
 * const state = { optimizer: "MicroAdam", config: {}, step: 1, calls: 1, skipped: 0, ring: 1,
 *   tensors: [{ name: "w", length: 4, buffers: { window: new Uint8Array(16) } }] };
 * checkMicroAdamState(state, [g]); // fine: all indices 0
 * ```
 */
export function checkMicroAdamState(
  state: OptimizerState,
  geometry: readonly MicroAdamGeometry[],
): void {
  const m = geometry[0]?.window ?? 1;
  if (state.ring !== state.step % m) {
    throw new CheckpointError(
      `ring: expected step mod window = ${state.step % m}, got ${state.ring}`,
    );
  }
  geometry.forEach((g, i) => {
    const b = state.tensors[i].buffers.window;
    const win = new Uint32Array(g.windowEntries);
    new Uint8Array(win.buffer).set(
      new Uint8Array(b.buffer, b.byteOffset, b.byteLength),
    );
    for (let blk = 0; blk < g.blocks; blk++) {
      const len = blockLength(g, blk);
      const off = blockWindowOffset(g, blk);
      for (let e = off; e < off + g.window * blockK(g, blk); e++) {
        if ((win[e] & 0xffff) >= len) {
          throw new CheckpointError(
            `tensor ${i} ("${
              state.tensors[i].name
            }"): window entry ${e} has index ${
              win[e] & 0xffff
            }, outside its block of ${len} elements`,
          );
        }
      }
    }
  });
}
