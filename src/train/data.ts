/**
 * The data of a training configuration: Fashion-MNIST from the default
 * folder or a given one, or the synthetic stand-in, cut to the requested
 * subsets.
 *
 * @module
 */

import { DatasetError } from "../errors.ts";
import { FASHION_MNIST_DIR, loadFashionMnist } from "../data/fashion_mnist.ts";
import { type ImageData, subset } from "../data/images.ts";
import { syntheticImageData } from "../data/synthetic.ts";
import type { TrainConfig } from "./config.ts";

/**
 * Loads the data `config.data` names: `"auto"` (Fashion-MNIST in
 * {@link FASHION_MNIST_DIR}), `"synthetic"`, or a folder with the IDX
 * files; then keeps the first `train_subset` / `test_subset` samples.
 *
 * @throws {DatasetError} When the files are missing (saying how to get them) or invalid.
 *
 * @example
 * ```ts
 * import { defaultConfig } from "./config.ts";
 * import { loadData } from "./data.ts";
 * const data = await loadData({ ...defaultConfig(), data: "synthetic", train_subset: 200, test_subset: 50 });
 * console.log(data.train.count, data.test.count, data.synthetic); // 200 50 true
 * ```
 */
export async function loadData(config: TrainConfig): Promise<ImageData> {
  let data: ImageData;
  if (config.data === "synthetic") {
    data = syntheticImageData({
      train: config.train_subset || 60000,
      test: config.test_subset || 10000,
      seed: 0,
    });
  } else {
    const dir = config.data === "auto" ? FASHION_MNIST_DIR : config.data;
    if (config.data !== "auto" && !(await isDir(dir))) {
      throw new DatasetError(
        `data: ${dir} is not a folder (expected "auto", "synthetic" or a folder with the Fashion-MNIST IDX files)`,
      );
    }
    data = await loadFashionMnist(dir);
  }
  return {
    ...data,
    train: config.train_subset
      ? subset(data.train, config.train_subset)
      : data.train,
    test: config.test_subset
      ? subset(data.test, config.test_subset)
      : data.test,
  };
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}
