/**
 * The optimizers compared in the experiments (`docs/experiments.md`),
 * by their short names, built from the project's CPU references and their
 * ablations: nothing here implements an algorithm.
 *
 * | name | what |
 * | --- | --- |
 * | `Adam` | `AdamCpu` |
 * | `AMSGrad` | `AMSGradCpu` |
 * | `µA` | `MicroAdamCpu` (MicroAdam as shipped) |
 * | `µA-th` | `MicroAdamTheoryCpu` (spec §C) |
 * | `µA+max` | µA with the running max of its window's S (`windowMax`) |
 * | `W` | dense windowed Adam: µA at density 1 without error feedback |
 * | `TopK-noEF` | µA without error feedback |
 * | `TopK-Adam` | Adam on top-k gradients: the theory variant without EF, max, with bias correction |
 * | `TopK-Adam+EF` | the same with the theory variant's 4-bit error feedback |
 *
 * `µA` and `µA-th` become their ablation twins (bit-identical by test) when
 * an `observer` or another `errorFeedback` is asked for.
 *
 * @module
 */

import { AdamCpu, AMSGradCpu } from "../reference/adam.ts";
import { MicroAdamCpu } from "../reference/microadam.ts";
import { MicroAdamTheoryCpu } from "../reference/microadam_theory.ts";
import {
  type CompressionObserver,
  MicroAdamAblationCpu,
  MicroAdamTheoryAblationCpu,
} from "../reference/ablations.ts";
import type { QuantizerSpec } from "../reference/error_feedback.ts";
import type { CpuTensor } from "../reference/cpu_optimizer.ts";
import type { Schedule } from "../core/schedule.ts";
import { InvalidOptionError } from "../errors.ts";

/** Short names of the compared optimizers. */
export const OPTIMIZER_NAMES = [
  "Adam",
  "AMSGrad",
  "µA",
  "µA-th",
  "µA+max",
  "W",
  "TopK-noEF",
  "TopK-Adam",
  "TopK-Adam+EF",
] as const;

/** One of {@link OPTIMIZER_NAMES}. */
export type OptimizerName = typeof OPTIMIZER_NAMES[number];

/** Hyperparameters of a run; compression settings are ignored by Adam and AMSGrad. */
export interface OptimizerSettings {
  /** Learning rate (the schedule multiplies it). */
  lr: number;
  /** ε. @default {1e-8} */
  eps?: number;
  /** (β1, β2). @default {[0.9, 0.999]} */
  betas?: readonly [number, number];
  /** Learning-rate schedule. @default {undefined} (constant) */
  schedule?: Schedule;
  /** µA window m. @default {10} */
  window?: number;
  /** Top-k density. @default {0.01} */
  density?: number;
  /** µA top-k block size D. @default {4096} */
  topkBlockSize?: number;
  /** EF quantization block size. @default {4096} */
  efBlockSize?: number;
  /** Error feedback other than the optimizer's own (µA: `"shipped"` is its own). */
  errorFeedback?: "shipped" | "none" | QuantizerSpec;
  /** Sees each step's compression (µA family and theory family only). */
  observer?: CompressionObserver;
}

/** What a runner needs of an optimizer. */
export interface Steppable {
  /** One step; false when skipped. */
  step(): boolean;
}

/**
 * Builds the optimizer `name` over `tensors`.
 *
 * @throws {InvalidOptionError} for an unknown name, or an error feedback the optimizer cannot take.
 *
 * @example
 * ```ts
 * import { makeOptimizer } from "./optimizers.ts";
 * const t = { param: new Float32Array(4), grad: new Float32Array([1, 0, 0, 0]) };
 * const opt = makeOptimizer("µA+max", [t], { lr: 0.1, density: 0.25 });
 * opt.step();
 * console.log(t.param[0].toFixed(3)); // -0.100
 * ```
 */
export function makeOptimizer(
  name: OptimizerName,
  tensors: CpuTensor[],
  s: OptimizerSettings,
): Steppable {
  const common = {
    lr: s.lr,
    eps: s.eps,
    betas: s.betas,
    schedule: s.schedule,
  };
  const micro = {
    ...common,
    window: s.window,
    density: s.density,
    topkBlockSize: s.topkBlockSize,
    efBlockSize: s.efBlockSize,
  };
  const theory = {
    ...common,
    density: s.density,
    efBlockSize: s.efBlockSize,
  };
  const obs = s.observer;
  const ef = s.errorFeedback;
  const theoryEf = () => {
    if (ef === "shipped") {
      throw new InvalidOptionError(
        `errorFeedback: "${name}" has no "shipped" (MicroAdam) error feedback; expected "none" or a quantizer, got "shipped"`,
      );
    }
    return ef;
  };
  switch (name) {
    case "Adam":
      return new AdamCpu(tensors, common);
    case "AMSGrad":
      return new AMSGradCpu(tensors, common);
    case "µA":
      return obs || (ef && ef !== "shipped")
        ? new MicroAdamAblationCpu(tensors, {
          ...micro,
          errorFeedback: ef,
          observer: obs,
        })
        : new MicroAdamCpu(tensors, micro);
    case "µA-th":
      return obs || ef
        ? new MicroAdamTheoryAblationCpu(tensors, {
          ...theory,
          errorFeedback: theoryEf(),
          observer: obs,
        })
        : new MicroAdamTheoryCpu(tensors, theory);
    case "µA+max":
      return new MicroAdamAblationCpu(tensors, {
        ...micro,
        errorFeedback: ef,
        windowMax: true,
        observer: obs,
      });
    case "W":
      return new MicroAdamAblationCpu(tensors, {
        ...micro,
        density: 1,
        errorFeedback: "none",
        observer: obs,
      });
    case "TopK-noEF":
      return new MicroAdamAblationCpu(tensors, {
        ...micro,
        errorFeedback: "none",
        observer: obs,
      });
    case "TopK-Adam":
      return new MicroAdamTheoryAblationCpu(tensors, {
        ...theory,
        errorFeedback: "none",
        amsgradMax: false,
        biasCorrection: true,
        observer: obs,
      });
    case "TopK-Adam+EF":
      return new MicroAdamTheoryAblationCpu(tensors, {
        ...theory,
        errorFeedback: theoryEf(),
        amsgradMax: false,
        biasCorrection: true,
        observer: obs,
      });
  }
  throw new InvalidOptionError(
    `optimizer: expected one of ${OPTIMIZER_NAMES.join(", ")}, got ${
      JSON.stringify(name)
    }`,
  );
}
