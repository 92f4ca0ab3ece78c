/**
 * Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017): 70,000 grayscale 28×28
 * images of clothing in 10 classes, 60,000 for training and 10,000 for test,
 * as four gzipped IDX files. Debian ships them in the package
 * `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/`).
 *
 * @module
 */

import { join } from "node:path";
import { DatasetError } from "../errors.ts";
import { readIdx } from "./idx.ts";
import type { ImageData, ImageSet } from "./images.ts";
import { validateImageSet } from "./images.ts";

/** Where Debian's `dataset-fashion-mnist` puts the files. */
export const FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist";

/** The class names, by label. */
export const FASHION_MNIST_CLASSES: readonly string[] = [
  "T-shirt/top",
  "Trouser",
  "Pullover",
  "Dress",
  "Coat",
  "Sandal",
  "Shirt",
  "Sneaker",
  "Bag",
  "Ankle boot",
];

/** File names of each split, as published (a `.gz` suffix is optional). */
const FILES = {
  train: ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"],
  test: ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"],
} as const;

/** How to get the data, for error messages. */
export const HOW_TO_GET_FASHION_MNIST =
  "Install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu; files in " +
  `${FASHION_MNIST_DIR}), or download the four files train-images-idx3-ubyte.gz, ` +
  "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz " +
  "from https://github.com/zalandoresearch/fashion-mnist into a folder and pass that folder.";

async function exists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** The path of `base` in `dir`, gzipped or not, or undefined. */
async function locate(dir: string, base: string): Promise<string | undefined> {
  for (const name of [`${base}.gz`, base]) {
    const path = join(dir, name);
    if (await exists(path)) return path;
  }
  return undefined;
}

/**
 * Whether `dir` (default {@link FASHION_MNIST_DIR}) holds the four files.
 *
 * @example
 * ```ts
 * import { hasFashionMnist } from "./fashion_mnist.ts";
 * console.log(typeof await hasFashionMnist("/nonexistent")); // "boolean"
 * ```
 */
export async function hasFashionMnist(
  dir: string = FASHION_MNIST_DIR,
): Promise<boolean> {
  for (const base of [...FILES.train, ...FILES.test]) {
    if (!await locate(dir, base)) return false;
  }
  return true;
}

async function loadSplit(
  dir: string,
  [imagesBase, labelsBase]: readonly [string, string],
): Promise<ImageSet> {
  const paths: string[] = [];
  for (const base of [imagesBase, labelsBase]) {
    const path = await locate(dir, base);
    if (!path) {
      throw new DatasetError(
        `Fashion-MNIST not found: ${
          join(dir, base)
        }.gz (or without .gz) does not exist. ${HOW_TO_GET_FASHION_MNIST}`,
      );
    }
    paths.push(path);
  }
  const [images, labels] = await Promise.all(paths.map((p) => readIdx(p)));
  if (images.dims.length !== 3) {
    throw new DatasetError(
      `${paths[0]}: expected images of 3 dimensions [count, rows, cols], got [${
        images.dims.join(", ")
      }] (is it a labels file?)`,
    );
  }
  if (labels.dims.length !== 1) {
    throw new DatasetError(
      `${paths[1]}: expected labels of 1 dimension [count], got [${
        labels.dims.join(", ")
      }] (is it an images file?)`,
    );
  }
  const [count, rows, cols] = images.dims;
  if (rows !== 28 || cols !== 28) {
    throw new DatasetError(
      `${paths[0]}: expected 28×28 images, got ${rows}×${cols}`,
    );
  }
  if (labels.dims[0] !== count) {
    throw new DatasetError(
      `${paths[1]}: ${labels.dims[0]} labels for the ${count} images of ${
        paths[0]
      }`,
    );
  }
  const set: ImageSet = {
    images: images.data,
    labels: labels.data,
    count,
    rows,
    cols,
    classes: FASHION_MNIST_CLASSES.length,
  };
  validateImageSet(set, paths[1]);
  return set;
}

/**
 * Loads and validates Fashion-MNIST from `dir` (default
 * {@link FASHION_MNIST_DIR}): magic numbers, dimensions (28×28), image and
 * label counts that agree, labels in 0..9.
 *
 * @throws {DatasetError} Naming the file and what is wrong, or, when a file
 * is missing, how to get the data.
 *
 * @example
 * ```ts
 * import { loadFashionMnist } from "./fashion_mnist.ts";
 * try {
 *   await loadFashionMnist("/nonexistent");
 * } catch (e) {
 *   console.log((e as Error).name); // DatasetError
 * }
 * ```
 */
export async function loadFashionMnist(
  dir: string = FASHION_MNIST_DIR,
): Promise<ImageData> {
  const [train, test] = await Promise.all([
    loadSplit(dir, FILES.train),
    loadSplit(dir, FILES.test),
  ]);
  return {
    train,
    test,
    source: `Fashion-MNIST (${dir})`,
    synthetic: false,
  };
}
