/**
 * A labelled image data set held as bytes, as it comes from IDX files (and
 * from the synthetic task): what the GPU data loader uploads.
 *
 * @module
 */

import { DatasetError } from "../errors.ts";

/** Images of `rows × cols` unsigned bytes with a class label each. */
export interface ImageSet {
  /** Pixels, image after image, row-major (`count · rows · cols` bytes). */
  images: Uint8Array<ArrayBuffer>;
  /** Class of each image, in `[0, classes)`. */
  labels: Uint8Array<ArrayBuffer>;
  /** Number of images. */
  count: number;
  /** Image height. */
  rows: number;
  /** Image width. */
  cols: number;
  /** Number of classes. */
  classes: number;
}

/** A training and a test split, and where they came from. */
export interface ImageData {
  /** The training split. */
  train: ImageSet;
  /** The test split. */
  test: ImageSet;
  /** What the data is, for reports (e.g. `"Fashion-MNIST (/usr/share/…)"`). */
  source: string;
  /** Whether it is the synthetic stand-in rather than real data. */
  synthetic: boolean;
}

/**
 * Checks a set's sizes and labels; `what` names it in the error.
 *
 * @throws {DatasetError} When sizes disagree or a label is out of range.
 *
 * @example
 * ```ts
 * import { validateImageSet } from "./images.ts";
 * const set = { images: new Uint8Array(8), labels: new Uint8Array([0, 3]), count: 2, rows: 2, cols: 2, classes: 3 };
 * try { validateImageSet(set, "toy"); } catch (e) { console.log((e as Error).message); }
 * // toy: label 3 at index 1 is outside 0..2
 * ```
 */
export function validateImageSet(set: ImageSet, what: string): void {
  const { count, rows, cols, classes } = set;
  if (set.images.byteLength !== count * rows * cols) {
    throw new DatasetError(
      `${what}: ${set.images.byteLength} pixel bytes for ${count} images of ${rows}×${cols} (expected ${
        count * rows * cols
      })`,
    );
  }
  if (set.labels.byteLength !== count) {
    throw new DatasetError(
      `${what}: ${set.labels.byteLength} labels for ${count} images`,
    );
  }
  for (let i = 0; i < count; i++) {
    if (set.labels[i] >= classes) {
      throw new DatasetError(
        `${what}: label ${set.labels[i]} at index ${i} is outside 0..${
          classes - 1
        }`,
      );
    }
  }
}

/**
 * The first `count` images of a set (all of them when it has fewer).
 *
 * @example
 * ```ts
 * import { subset } from "./images.ts";
 * const set = { images: new Uint8Array(12), labels: new Uint8Array(3), count: 3, rows: 2, cols: 2, classes: 2 };
 * console.log(subset(set, 2).images.length); // 8
 * ```
 */
export function subset(set: ImageSet, count: number): ImageSet {
  if (count >= set.count) return set;
  const px = set.rows * set.cols;
  return {
    ...set,
    count,
    images: set.images.slice(0, count * px),
    labels: set.labels.slice(0, count),
  };
}

/**
 * Mean and standard deviation of the pixels scaled to [0, 1], the usual
 * input normalization (computed on the training split).
 *
 * @example
 * ```ts
 * import { pixelStats } from "./images.ts";
 * const set = { images: new Uint8Array([0, 255]), labels: new Uint8Array(1), count: 1, rows: 1, cols: 2, classes: 1 };
 * console.log(pixelStats(set)); // { mean: 0.5, std: 0.5 }
 * ```
 */
export function pixelStats(set: ImageSet): { mean: number; std: number } {
  const hist = new Float64Array(256);
  for (const b of set.images) hist[b]++;
  let n = 0;
  let sum = 0;
  for (let v = 0; v < 256; v++) {
    n += hist[v];
    sum += hist[v] * v / 255;
  }
  const mean = sum / n;
  let sq = 0;
  for (let v = 0; v < 256; v++) sq += hist[v] * (v / 255 - mean) ** 2;
  return { mean, std: Math.sqrt(sq / n) };
}
