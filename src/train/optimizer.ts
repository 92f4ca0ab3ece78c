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
  InvalidOptionError,
  linearWarmup,
  MicroAdam,
  type Schedule,
} from "../../mod.ts";
import type { TrainConfig } from "./config.ts";

/** One of the WebGPU optimizers. */
export type AnyOptimizer = MicroAdam | Adam | AdamW | AMSGrad;

/** Display names of the optimizers (each equals the optimizer's `kind`). */
export const OPTIMIZER_NAMES: Record<TrainConfig["optimizer"], string> = {
  microadam: "MicroAdam",
  adamw: "AdamW",
  amsgrad: "AMSGrad",
  adam: "Adam",
};

/**
 * The learning-rate schedule of `config` over `totalSteps` steps: a linear
 * warm-up over `warmup_steps` (factor t/w at step t), then constant (1) or a
 * cosine decay from 1 at the first step after the warm-up to 0 at the last
 * step (`½(1 + cos(π (t − w − 1) / (totalSteps − w − 1)))`; with a single
 * step after the warm-up, that step has factor 1).
 *
 * @param config The run's configuration (`schedule`, `warmup_steps`).
 * @param totalSteps Optimizer steps in the whole run.
 * @throws {InvalidOptionError} `totalSteps` is not an integer >= 1, or the
 * warm-up is not shorter than the run.
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
  if (!(Number.isSafeInteger(totalSteps) && totalSteps >= 1)) {
    throw new InvalidOptionError(
      `totalSteps: expected an integer >= 1, got ${totalSteps}`,
    );
  }
  if (warmupSteps >= totalSteps) {
    throw new InvalidOptionError(
      `warmup_steps must be less than the run's ${totalSteps} steps, got ${warmupSteps}`,
    );
  }
  if (config.schedule === "cosine") {
    return cosineDecay(totalSteps, { warmupSteps, minFactor: 0 });
  }
  return warmupSteps > 0 ? linearWarmup(warmupSteps) : constant();
}

/**
 * Creates the optimizer `config` names over `tensors` (one param group),
 * with `config.lr`, the schedule of {@link scheduleOf}, and for MicroAdam
 * `window`, `density` and `dtype`. A `weight_decay` of null keeps the
 * optimizer's own default (AdamW 0.01, the others 0).
 *
 * @param device The device owning the tensors.
 * @param tensors The model's parameters and gradients.
 * @param config The run's configuration.
 * @param totalSteps Optimizer steps in the whole run (the cosine's length).
 * @throws {InvalidOptionError} A value the optimizer or schedule rejects.
 * @throws {TensorMismatchError} A tensor the optimizer cannot update (e.g.
 * f32 tensors for `dtype: "bf16"`).
 *
 * @example
 * ```ts
 * import { createTensor, requestDevice } from "../../mod.ts";
 * import { defaultConfig } from "./config.ts";
 * import { createOptimizer } from "./optimizer.ts";
 * const device = await requestDevice();
 * const config = { ...defaultConfig(), optimizer: "adamw" as const, lr: 0.01 };
 * const opt = createOptimizer(device, [createTensor(device, 8)], config, 100);
 * console.log(opt.kind, opt.currentLr(), opt.paramGroups[0].weightDecay); // AdamW 0.01 0.01
 * opt.dispose();
 * device.destroy();
 * ```
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
