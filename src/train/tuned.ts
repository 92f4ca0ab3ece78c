/**
 * Learning rates from the README's comparison (`bench/train_compare.ts
 * --phase tune`, results in `bench/training/results.jsonl`): each
 * optimizer's best final test accuracy after 3 epochs on one log grid (the
 * half-decade steps 1e-4 … 3e-2, and 2e-3 and 5e-3 around the optimum) for
 * the MLP 784-256-128-10 on Fashion-MNIST, batch 128, cosine decay, seed 1.
 * The demo uses them; the default config (`configs/fashion_mnist.yaml`)
 * holds MicroAdam's.
 *
 * @module
 */

import type { OptimizerName } from "./config.ts";

/**
 * The tuned learning rate of each optimizer.
 *
 * @example
 * ```ts
 * import { TUNED_LR } from "./tuned.ts";
 * console.log(TUNED_LR.microadam); // 0.003
 * ```
 */
export const TUNED_LR: Readonly<Record<OptimizerName, number>> = {
  microadam: 0.003,
  adamw: 0.003,
  amsgrad: 0.003,
  // Not on the grid: Adam differs from AdamW here only by AdamW's weight
  // decay of 0.01, so it takes AdamW's rate.
  adam: 0.003,
};
