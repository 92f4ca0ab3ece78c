/**
 * Learning-rate schedules: functions from the 1-based step-call number to a
 * multiplier of a group's base learning rate (the idea of PyTorch's
 * `LambdaLR`). They are evaluated on the CPU at every `step()` call.
 *
 * @module
 */

import { InvalidOptionError } from "../errors.ts";

/** Maps the 1-based step call to a factor applied to the group's base lr. */
export type Schedule = (step: number) => number;

/**
 * Constant factor 1.
 *
 * @example
 * ```ts
 * import { constant } from "./schedule.ts";
 * console.log(constant()(100)); // 1
 * ```
 */
export function constant(): Schedule {
  return () => 1;
}

/**
 * Linear warm-up from `1 / warmupSteps` to 1 over `warmupSteps` calls, then 1.
 *
 * @example
 * ```ts
 * import { linearWarmup } from "./schedule.ts";
 * const s = linearWarmup(4);
 * console.log(s(1), s(2), s(4), s(9)); // 0.25 0.5 1 1
 * ```
 */
export function linearWarmup(warmupSteps: number): Schedule {
  positiveInteger("warmupSteps", warmupSteps);
  return (step) => Math.min(1, step / warmupSteps);
}

/**
 * Optional linear warm-up over the first `warmupSteps` calls (1/w, 2/w, …,
 * 1), then cosine decay from 1 (the first call after the warm-up) to
 * `minFactor` (call `totalSteps` and after).
 *
 * @example
 * ```ts
 * import { cosineDecay } from "./schedule.ts";
 * const s = cosineDecay(11, { minFactor: 0 });
 * console.log(s(1), s(6), s(11), s(20)); // 1 0.5 0 0
 * const w = cosineDecay(10, { warmupSteps: 2 });
 * console.log(w(1), w(2), w(3)); // 0.5 1 1
 * ```
 */
export function cosineDecay(
  totalSteps: number,
  options: {
    /** Factor reached at `totalSteps`. @default {0} */
    minFactor?: number;
    /** Linear warm-up calls before the decay starts. @default {0} */
    warmupSteps?: number;
  } = {},
): Schedule {
  positiveInteger("totalSteps", totalSteps);
  const min = options.minFactor ?? 0;
  const warm = options.warmupSteps ?? 0;
  if (!(min >= 0 && min <= 1)) {
    throw new InvalidOptionError(`minFactor must be in [0, 1], got ${min}`);
  }
  if (!(Number.isInteger(warm) && warm >= 0 && warm < totalSteps)) {
    throw new InvalidOptionError(
      `warmupSteps must be an integer in [0, totalSteps), got ${warm}`,
    );
  }
  const span = Math.max(1, totalSteps - warm - 1);
  return (step) => {
    if (step <= warm) return step / warm;
    const x = Math.min(1, Math.max(0, (step - warm - 1) / span));
    return min + (1 - min) * 0.5 * (1 + Math.cos(Math.PI * x));
  };
}

/**
 * Multiplies the factor by `gamma` every `stepSize` calls: calls 1…stepSize
 * use 1, the next stepSize calls `gamma`, and so on (PyTorch's `StepLR`).
 *
 * @example
 * ```ts
 * import { stepDecay } from "./schedule.ts";
 * const s = stepDecay(2, 0.5);
 * console.log(s(1), s(2), s(3), s(5)); // 1 1 0.5 0.25
 * ```
 */
export function stepDecay(stepSize: number, gamma: number): Schedule {
  positiveInteger("stepSize", stepSize);
  if (!(gamma > 0 && Number.isFinite(gamma))) {
    throw new InvalidOptionError(
      `gamma must be a finite number > 0, got ${gamma}`,
    );
  }
  return (step) => gamma ** Math.floor((step - 1) / stepSize);
}

function positiveInteger(name: string, v: number): void {
  if (!(Number.isInteger(v) && v > 0)) {
    throw new InvalidOptionError(`${name} must be an integer > 0, got ${v}`);
  }
}
