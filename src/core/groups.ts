/**
 * Parameter groups in the style of `torch.optim`: an optimizer takes either a
 * flat list of tensors or a list of groups, each of which may override the
 * learning rate, weight decay and schedule. Groups stay mutable: a change to
 * `group.lr` takes effect at the next step.
 *
 * @module
 */

import { describe, InvalidOptionError } from "../errors.ts";
import { checkKeys, given } from "./checks.ts";
import { checkLr, checkSchedule, checkWeightDecay } from "./options.ts";
import type { Schedule } from "./schedule.ts";

/** A group as the caller writes it. */
export interface ParamGroupSpec<T> {
  /** The tensors of the group. */
  params: T[];
  /** Base learning rate of the group. @default {the optimizer's lr} */
  lr?: number;
  /** Weight decay of the group. @default {the optimizer's weightDecay} */
  weightDecay?: number;
  /** Schedule of the group. @default {the optimizer's schedule} */
  schedule?: Schedule;
}

/** A group with every field resolved. */
export interface ParamGroup<T> {
  /** The tensors of the group. */
  params: T[];
  /** Base learning rate (before the schedule). */
  lr: number;
  /** Weight decay. */
  weightDecay: number;
  /** Schedule factor, or undefined for a constant lr. */
  schedule?: Schedule;
}

/** The keys a param group may have. */
const GROUP_KEYS = ["params", "lr", "weightDecay", "schedule"];

function isGroupSpec<T>(x: unknown): x is ParamGroupSpec<T> {
  return typeof x === "object" && x !== null &&
    Array.isArray((x as { params?: unknown }).params);
}

/**
 * Turns `params` (tensors, or groups of tensors) into resolved groups.
 *
 * @example
 * ```ts
 * import { normalizeGroups } from "./groups.ts";
 * const groups = normalizeGroups([{ params: ["a"], lr: 0.1 }, { params: ["b"] }], { lr: 1, weightDecay: 0 });
 * console.log(groups.map((g) => g.lr)); // [0.1, 1]
 * ```
 */
export function normalizeGroups<T>(
  params: readonly (T | ParamGroupSpec<T>)[],
  defaults: { lr: number; weightDecay: number; schedule?: Schedule },
): ParamGroup<T>[] {
  if (!Array.isArray(params) || params.length === 0) {
    throw new InvalidOptionError(
      `params: expected a non-empty array of tensors or groups, got ${
        describe(params)
      }`,
    );
  }
  const groupsGiven = params.every((p) => isGroupSpec<T>(p));
  if (!groupsGiven && params.some((p) => isGroupSpec<T>(p))) {
    throw new InvalidOptionError(
      "params: expected either tensors or groups ({ params: [...] }), not a mix",
    );
  }
  const specs: ParamGroupSpec<T>[] = groupsGiven
    ? params as ParamGroupSpec<T>[]
    : [{ params: params as T[] }];
  return specs.map((s, i) => {
    const o = groupsGiven
      ? checkKeys(s, GROUP_KEYS, `group ${i}`)
      : s as unknown as Record<string, unknown>;
    if (s.params.length === 0) {
      throw new InvalidOptionError(`group ${i}: has no tensors`);
    }
    return {
      params: [...s.params],
      lr: checkLr(given(o, "lr", defaults.lr), `group ${i} lr`),
      weightDecay: checkWeightDecay(
        given(o, "weightDecay", defaults.weightDecay),
        `group ${i} weightDecay`,
      ),
      schedule: checkSchedule(
        given(o, "schedule", defaults.schedule),
        `group ${i} schedule`,
      ),
    };
  });
}

/**
 * The learning rate and weight decay a group uses at 1-based step call
 * `call`, validated (a schedule returning NaN or a negative factor is an
 * error, and so is lr·weightDecay ≥ 1 for `decoupled` weight decay).
 *
 * @example
 * ```ts
 * import { groupHyper } from "./groups.ts";
 * console.log(groupHyper({ params: [], lr: 0.1, weightDecay: 0, schedule: (s) => 1 / s }, 2, 0)); // { lr: 0.05, weightDecay: 0 }
 * ```
 */
export function groupHyper<T>(
  group: ParamGroup<T>,
  call: number,
  index: number,
  decoupled = false,
): { lr: number; weightDecay: number } {
  const base = checkLr(group.lr, `group ${index} lr`);
  const schedule = checkSchedule(group.schedule, `group ${index} schedule`);
  let factor: unknown = 1;
  if (schedule) {
    factor = schedule(call);
    if (
      typeof factor !== "number" || !Number.isFinite(factor) || factor < 0
    ) {
      throw new InvalidOptionError(
        `group ${index} lr at step ${call} (base ${base} × schedule ${
          describe(factor)
        }): expected a finite schedule factor >= 0, got ${describe(factor)}`,
      );
    }
  }
  const lr = checkLr(
    base * (factor as number),
    `group ${index} lr at step ${call} (base ${base} × schedule ${factor})`,
  );
  const weightDecay = checkWeightDecay(
    group.weightDecay,
    `group ${index} weightDecay`,
  );
  // Decoupled decay multiplies by 1 − lr·wd: at 1 or more the parameters
  // would flip sign and grow without bound.
  if (decoupled && lr * weightDecay >= 1) {
    throw new InvalidOptionError(
      `group ${index} at step ${call}: lr ${lr} × weightDecay ${weightDecay} = ${
        lr * weightDecay
      }; decoupled weight decay multiplies the parameters by 1 − lr·weightDecay, which must stay above 0 (expected lr·weightDecay < 1)`,
    );
  }
  return { lr, weightDecay };
}
