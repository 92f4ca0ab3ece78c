/**
 * The segment table a batch's kernels walk (`SegTable` and `Seg` in
 * src/gpu/layout.ts): a 4-word header, then one `Seg` row per segment.
 *
 * @module
 */

import { SEG, SEG_TABLE, TILE } from "./layout.ts";

export { TILE };

/** Words per segment row. */
export const SEGMENT_WORDS: number = SEG.bytes / 4;

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
  /** MicroAdam: word of the segment's staged window row in the work buffer. */
  stageOff?: number;
  /** One-pass MicroAdam: the batch's binding pair holding the segment. */
  lane?: number;
}

/**
 * Encodes segments as the kernels' table, with the prefix sums of blocks and
 * tiles that map workgroups to segments. `hintOff` is the word of MicroAdam's
 * work buffer where the one-pass select kernel keeps its per-EF-block
 * selection hints (0 for every other kernel).
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
  hintOff = 0,
): { words: Uint32Array<ArrayBuffer>; blocks: number; tiles: number } {
  const bytes = new Uint8Array(SEG_TABLE.bytes + SEG.bytes * segments.length);
  const view = new DataView(bytes.buffer);
  let blocks = 0;
  let tiles = 0;
  segments.forEach((s, i) => {
    const block = s.block ?? TILE;
    SEG.write(view, {
      coord_start: s.coordStart,
      len: s.len,
      d: s.d,
      param_off: s.paramOff,
      grad_off: s.gradOff,
      codes_off: s.codesOff ?? 0,
      window_off: s.windowOff ?? 0,
      stats_off: s.statsOff ?? 0,
      block,
      k_block: s.kBlock ?? 0,
      k_tail: s.kTail ?? 0,
      first_block: blocks,
      first_tile: tiles,
      param_group: s.paramGroup,
      tensor: s.tensor,
      state_off: s.stateOff ?? 0,
      stage_off: s.stageOff ?? 0,
      lane: s.lane ?? 0,
    }, SEG_TABLE.bytes + SEG.bytes * i);
    blocks += Math.ceil(s.len / block);
    tiles += Math.ceil(s.len / TILE);
  });
  SEG_TABLE.write(view, {
    num_segs: segments.length,
    total_blocks: blocks,
    total_tiles: tiles,
    hint_off: hintOff,
  });
  return { words: new Uint32Array(bytes.buffer), blocks, tiles };
}
