/**
 * The optimizer of a training configuration, built with the public API
 * only: the four WebGPU optimizers and the schedules of `mod.ts`.
 *
 * @module
 */

import {
  Adam,
  AdamW,
  AMSGrad,
  constant,
  cosineDecay,
  type GpuTensor,
  linearWarmup,
  MicroAdam,
  type Schedule,
} from "../../mod.ts";
import type { TrainConfig } from "./config.ts";

/** One of the WebGPU optimizers. */
export type AnyOptimizer = MicroAdam | Adam | AdamW | AMSGrad;

/** Display names of the optimizers. */
export const OPTIMIZER_NAMES: Record<TrainConfig["optimizer"], string> = {
  microadam: "MicroAdam",
  adamw: "AdamW",
  amsgrad: "AMSGrad",
  adam: "Adam",
};

/**
 * The learning-rate schedule of `config` over `totalSteps` steps: a linear
 * warm-up over `warmup_steps`, then constant or a cosine decay to 0 at the
 * last step.
 *
 * @example
 * ```ts
 * import { defaultConfig } from "./config.ts";
 * import { scheduleOf } from "./optimizer.ts";
 * const s = scheduleOf({ ...defaultConfig(), schedule: "cosine", warmup_steps: 2 }, 12);
 * console.log(s(1), s(2), s(12)); // 0.5 1 0
 * ```
 */
export function scheduleOf(config: TrainConfig, totalSteps: number): Schedule {
  const warmupSteps = config.warmup_steps;
  if (config.schedule === "cosine") {
    return cosineDecay(totalSteps, { warmupSteps, minFactor: 0 });
  }
  return warmupSteps > 0 ? linearWarmup(warmupSteps) : constant();
}

/**
 * Creates the optimizer `config` names over `tensors`, with the schedule of
 * {@link scheduleOf}. A `weight_decay` of null keeps the optimizer's own
 * default.
 */
export function createOptimizer(
  device: GPUDevice,
  tensors: GpuTensor[],
  config: TrainConfig,
  totalSteps: number,
): AnyOptimizer {
  const common = {
    lr: config.lr,
    schedule: scheduleOf(config, totalSteps),
    ...(config.weight_decay === null
      ? {}
      : { weightDecay: config.weight_decay }),
  };
  switch (config.optimizer) {
    case "microadam":
      return new MicroAdam(device, tensors, {
        ...common,
        window: config.window,
        density: config.density,
        dtype: config.dtype,
      });
    case "adamw":
      return new AdamW(device, tensors, common);
    case "amsgrad":
      return new AMSGrad(device, tensors, common);
    case "adam":
      return new Adam(device, tensors, common);
  }
}
