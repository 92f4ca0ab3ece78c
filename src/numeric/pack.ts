/**
 * Bit packing of the compressed MicroAdam state, shared by the CPU reference
 * and the WGSL kernels so that checkpoints move between them unchanged:
 *
 * - a window entry is one u32: block-local index in the low 16 bits, the
 *   bf16 value in the high 16 bits;
 * - EF codes are 4-bit, eight per u32, element `j` in word `j >> 3` at bit
 *   `4 * (j & 7)`;
 * - EF statistics are one u32 per quantization block: bf16 minimum in the low
 *   16 bits, bf16 maximum in the high 16 bits.
 *
 * @module
 */

/**
 * Packs a block-local index (0..65535) and a bf16 value pattern into a window entry.
 *
 * @example
 * ```ts
 * import { packEntry } from "./pack.ts";
 * console.log(packEntry(5, 0x3f80).toString(16)); // "3f800005"
 * ```
 */
export function packEntry(index: number, valueBits: number): number {
  return ((valueBits << 16) | (index & 0xffff)) >>> 0;
}

/**
 * The block-local index of a window entry.
 *
 * @example
 * ```ts
 * import { entryIndex } from "./pack.ts";
 * console.log(entryIndex(0x3f800005)); // 5
 * ```
 */
export function entryIndex(entry: number): number {
  return entry & 0xffff;
}

/**
 * The bf16 value bits of a window entry.
 *
 * @example
 * ```ts
 * import { entryValueBits } from "./pack.ts";
 * console.log(entryValueBits(0x3f800005).toString(16)); // "3f80"
 * ```
 */
export function entryValueBits(entry: number): number {
  return entry >>> 16;
}

/**
 * Reads the 4-bit code of element `j` from packed words.
 *
 * @example
 * ```ts
 * import { getCode, setCode } from "./pack.ts";
 * const words = new Uint32Array(1);
 * setCode(words, 3, 11);
 * console.log(getCode(words, 3)); // 11
 * ```
 */
export function getCode(words: Uint32Array, j: number): number {
  return (words[j >>> 3] >>> ((j & 7) * 4)) & 0xf;
}

/**
 * Writes the 4-bit code of element `j` into packed words.
 *
 * @example
 * ```ts
 * import { getCode, setCode } from "./pack.ts";
 * const words = new Uint32Array(2);
 * setCode(words, 9, 15);
 * console.log(getCode(words, 9), words[1]); // 15 240
 * ```
 */
export function setCode(words: Uint32Array, j: number, code: number): void {
  const w = j >>> 3;
  const s = (j & 7) * 4;
  words[w] = ((words[w] & ~(0xf << s)) | ((code & 0xf) << s)) >>> 0;
}

/**
 * Packs EF block statistics (bf16 bits of min and max) into one u32.
 *
 * @example
 * ```ts
 * import { packStats } from "./pack.ts";
 * console.log(packStats(0xbf80, 0x3f80).toString(16)); // "3f80bf80"
 * ```
 */
export function packStats(minBits: number, maxBits: number): number {
  return ((maxBits << 16) | (minBits & 0xffff)) >>> 0;
}
