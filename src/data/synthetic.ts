/**
 * A synthetic stand-in for Fashion-MNIST, for machines without the data and
 * for tests: 28×28 byte images in 10 classes. Each class is a pattern of a
 * few soft blobs (some shared with other classes, so classes overlap); an
 * image is its class pattern shifted by up to ±3 pixels, with a random
 * contrast and uniform pixel noise. A linear model does not solve it; an MLP
 * learns it well within an epoch.
 *
 * @module
 */

import { Random } from "../core/random.ts";
import { InvalidOptionError } from "../errors.ts";
import type { ImageData, ImageSet } from "./images.ts";

/** Options of {@link syntheticImageData}. */
export interface SyntheticOptions {
  /** Training images. @default {60000} */
  train?: number;
  /** Test images. @default {10000} */
  test?: number;
  /** Seed of the patterns and the images. @default {0} */
  seed?: number;
}

const SIDE = 28;
const CLASSES = 10;
const SHIFT = 3;
/** Blobs of every class pattern, and how many are drawn from a shared pool. */
const BLOBS = 4;
const SHARED = 2;
const NOISE = 70;

function patterns(random: Random): Float32Array[] {
  const blob = () => ({
    x: 5 + random.next() * 18,
    y: 5 + random.next() * 18,
    r: 2 + random.next() * 4,
    v: 120 + random.next() * 135,
  });
  const pool = Array.from({ length: 6 }, blob);
  return Array.from({ length: CLASSES }, () => {
    const blobs = [
      ...Array.from({ length: SHARED }, () => pool[random.int(pool.length)]),
      ...Array.from({ length: BLOBS - SHARED }, blob),
    ];
    // Drawn with a margin of SHIFT on every side, so shifts stay inside.
    const side = SIDE + 2 * SHIFT;
    const img = new Float32Array(side * side);
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) {
        let v = 0;
        for (const b of blobs) {
          const d2 = (x - SHIFT - b.x) ** 2 + (y - SHIFT - b.y) ** 2;
          v += b.v * Math.exp(-d2 / (2 * b.r * b.r));
        }
        img[y * side + x] = v;
      }
    }
    return img;
  });
}

function draw(count: number, random: Random, pats: Float32Array[]): ImageSet {
  const px = SIDE * SIDE;
  const side = SIDE + 2 * SHIFT;
  const images = new Uint8Array(count * px);
  const labels = new Uint8Array(count);
  for (let n = 0; n < count; n++) {
    const label = random.int(CLASSES);
    labels[n] = label;
    const pat = pats[label];
    const dx = random.int(2 * SHIFT + 1);
    const dy = random.int(2 * SHIFT + 1);
    const contrast = 0.6 + 0.6 * random.next();
    for (let y = 0; y < SIDE; y++) {
      const row = (y + dy) * side + dx;
      for (let x = 0; x < SIDE; x++) {
        const v = pat[row + x] * contrast + (random.next() - 0.5) * 2 * NOISE;
        images[n * px + y * SIDE + x] = Math.max(0, Math.min(255, v));
      }
    }
  }
  return { images, labels, count, rows: SIDE, cols: SIDE, classes: CLASSES };
}

/**
 * Generates the synthetic training and test splits (a pure function of the
 * options).
 *
 * @example
 * ```ts
 * import { syntheticImageData } from "./synthetic.ts";
 * const data = syntheticImageData({ train: 100, test: 20, seed: 1 });
 * console.log(data.train.count, data.test.images.length, data.synthetic); // 100 15680 true
 * ```
 */
export function syntheticImageData(options: SyntheticOptions = {}): ImageData {
  const train = options.train ?? 60000;
  const test = options.test ?? 10000;
  const seed = options.seed ?? 0;
  for (const [k, v] of [["train", train], ["test", test]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new InvalidOptionError(
        `synthetic ${k}: expected an image count >= 1, got ${v}`,
      );
    }
  }
  const pats = patterns(new Random(seed, 100));
  return {
    train: draw(train, new Random(seed, 101), pats),
    test: draw(test, new Random(seed, 102), pats),
    source: `synthetic 10-class 28×28 images (seed ${seed})`,
    synthetic: true,
  };
}
