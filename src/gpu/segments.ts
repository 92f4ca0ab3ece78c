/**
 * The segment table a batch's kernels walk (`SegTable` in
 * kernels/layout.wgsl): a 4-word header and 16 words per segment.
 *
 * @module
 */

/** Elements per tile of the elementwise kernels (kernels/layout.wgsl `TILE`). */
export const TILE = 1024;

/** Words per segment row. */
export const SEGMENT_WORDS = 16;

/** Fields of one segment; optimizer-specific ones default to 0. */
export interface SegmentFields {
  /** First element as a coordinate of the tensor. */
  coordStart: number;
  /** Elements in the segment. */
  len: number;
  /** Elements in the tensor. */
  d: number;
  /** Element offset in the params binding. */
  paramOff: number;
  /** Element offset in the grads binding. */
  gradOff: number;
  /** Param group index. */
  paramGroup: number;
  /** Tensor index. */
  tensor: number;
  /** MicroAdam: first code word. */
  codesOff?: number;
  /** MicroAdam: first window entry. */
  windowOff?: number;
  /** MicroAdam: EF block index of the tensor's element 0. */
  statsOff?: number;
  /** MicroAdam: full top-k block size. */
  block?: number;
  /** MicroAdam: entries per full block. */
  kBlock?: number;
  /** MicroAdam: entries of the tail block. */
  kTail?: number;
  /** Adam: element offset in the moment buffers. */
  stateOff?: number;
}

/**
 * Encodes segments as the kernels' table, with the prefix sums of blocks and
 * tiles that map workgroups to segments.
 *
 * @example
 * ```ts
 * import { segmentTable } from "./segments.ts";
 * const t = segmentTable([{ coordStart: 0, len: 3000, d: 3000, paramOff: 0, gradOff: 0, paramGroup: 0, tensor: 0, block: 1000 }]);
 * console.log(t.blocks, t.tiles); // 3 3
 * ```
 */
export function segmentTable(
  segments: SegmentFields[],
): { words: Uint32Array; blocks: number; tiles: number } {
  const words = new Uint32Array(4 + SEGMENT_WORDS * segments.length);
  let blocks = 0;
  let tiles = 0;
  segments.forEach((s, i) => {
    const block = s.block ?? TILE;
    const row = [
      s.coordStart,
      s.len,
      s.d,
      s.paramOff,
      s.gradOff,
      s.codesOff ?? 0,
      s.windowOff ?? 0,
      s.statsOff ?? 0,
      block,
      s.kBlock ?? 0,
      s.kTail ?? 0,
      blocks,
      tiles,
      s.paramGroup,
      s.tensor,
      s.stateOff ?? 0,
    ];
    words.set(row, 4 + SEGMENT_WORDS * i);
    blocks += Math.ceil(s.len / block);
    tiles += Math.ceil(s.len / TILE);
  });
  words.set([segments.length, blocks, tiles, 0], 0);
  return { words, blocks, tiles };
}
