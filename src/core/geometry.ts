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
