/**
 * Hyperparameters of every optimizer, their defaults, and their validation.
 * One place, so CPU and GPU optimizers accept and reject exactly the same
 * options.
 *
 * @module
 */

import { describe, InvalidOptionError } from "../errors.ts";
import {
  checkBoolean,
  checkF32,
  checkInteger,
  checkKeys,
  F32_MIN_NORMAL,
  given,
} from "./checks.ts";
import { MAX_TOPK_BLOCK } from "./limits.ts";
import type { Schedule } from "./schedule.ts";

/**
 * The policies of the optimizers that always check their gradients
 * (MicroAdam: its first kernel reads every gradient anyway, so the check
 * costs nothing there and cannot be turned off).
 *
 * @example
 * ```ts
 * import { type CheckedNonFinitePolicy, resolveMicroAdamOptions } from "./options.ts";
 * const policy: CheckedNonFinitePolicy = "error";
 * console.log(resolveMicroAdamOptions({ nonFinite: policy }).nonFinite); // "error"
 * ```
 */
export type CheckedNonFinitePolicy = "skip" | "error";

/**
 * What to do when a gradient holds NaN, ±Infinity or a magnitude of 2^60 or
 * more: skip the step, skip it and report it, or (Adam, AdamW and AMSGrad
 * only) not look at all. {@link CommonOptions.nonFinite} says what each costs.
 */
export type NonFinitePolicy = CheckedNonFinitePolicy | "unchecked";

/** Options every optimizer shares. */
export interface CommonOptions {
  /** Learning rate (base value; groups and schedules scale it). @default {1e-3} */
  lr?: number;
  /** Decay rates of the first and second moments, each in [0, 1) (and below 1 as an f32). @default {[0.9, 0.999]} */
  betas?: readonly [number, number];
  /** Added to the denominator for stability; > 0, at least the smallest normal f32. @default {1e-8} */
  eps?: number;
  /** Weight decay; decoupled (AdamW-style) unless stated. @default {0} */
  weightDecay?: number;
  /** Learning-rate schedule applied to every group without its own. @default {undefined} (constant) */
  schedule?: Schedule;
  /**
   * On a non-finite gradient (NaN, ±Infinity, or a magnitude of 2^60 or
   * more, see `GRADIENT_LIMIT_LOG2`): `"skip"` leaves the state exactly as it
   * was and counts the skip (see `status()`); `"error"` does the same and
   * then throws {@link NonFiniteGradientError}.
   *
   * `"unchecked"` (Adam, AdamW and AMSGrad only) does not look for them, like
   * PyTorch's fused optimizers without a GradScaler. It saves one read of
   * every gradient per step (4 bytes per parameter: on the GPU the whole
   * `check_finite` pass, about a fifth of an AdamW step over 2^24 parameters
   * on an H200). The risk: such a gradient flows through Adam's formulas into the
   * moments and the parameters exactly as the arithmetic gives (NaN or
   * ±Infinity at its coordinates, which later steps keep), the step counts as
   * applied, `status().skipped` stays 0, and a state dict holding non-finite
   * moments is refused by `loadStateDict()`. Use it when the gradients are
   * known to be finite, or checked elsewhere (a loss scaler).
   * MicroAdam refuses it ({@link CheckedNonFinitePolicy}).
   * @default {"skip"}
   */
  nonFinite?: NonFinitePolicy;
}

/** Options of Adam, AdamW and AMSGrad. */
export interface AdamOptions extends CommonOptions {
  /** Keep the running maximum of the second moment (AMSGrad). @default {false} */
  amsgrad?: boolean;
  /**
   * Apply weight decay as `p ← p(1 − lr·wd)` (AdamW) rather than adding
   * `wd·p` to the gradient (Adam's L2). @default {false} for Adam/AMSGrad, true for AdamW
   */
  decoupledWeightDecay?: boolean;
}

/** Storage type of parameters and gradients for MicroAdam. */
export type DType = "f32" | "bf16";

/** Options of MicroAdam. */
export interface MicroAdamOptions extends CommonOptions {
  /**
   * On a non-finite gradient: `"skip"` or `"error"`, as for every optimizer
   * ({@link CommonOptions.nonFinite}). There is no `"unchecked"`: the first
   * kernel reads every gradient anyway and checks it at no extra cost.
   * @default {"skip"}
   */
  nonFinite?: CheckedNonFinitePolicy;
  /** Window length m: how many sparse gradients are kept. @default {10} */
  window?: number;
  /** Fraction of each top-k block kept per step, in (0, 1]. @default {0.01} */
  density?: number;
  /**
   * Top-k block size D (indices are u16, so D ≤ 65536). One workgroup
   * selects each block, so 4096 gives many workgroups on any tensor larger
   * than a few blocks, and k = ceil(4096 × 1 %) = 41 costs < 0.1 % over 1 %.
   * @default {4096}
   */
  topkBlockSize?: number;
  /** Error-feedback quantization block size Q (even, in [2, 2^31]). @default {4096} */
  efBlockSize?: number;
  /**
   * `"f32"`: parameters and gradients are f32 (docs/algorithm.md §B). `"bf16"`: they are
   * bf16, packed two per u32 (docs/algorithm.md §A, bit-exact with the authors' code on CPU).
   * @default {"f32"}
   */
  dtype?: DType;
}

/** Adam options with every default filled in. */
export type ResolvedAdamOptions =
  & Required<Omit<AdamOptions, "schedule">>
  & { schedule?: Schedule };

/** MicroAdam options with every default filled in. */
export type ResolvedMicroAdamOptions =
  & Required<Omit<MicroAdamOptions, "schedule">>
  & { schedule?: Schedule };

/** The option names of {@link CommonOptions}. */
export const COMMON_KEYS: readonly string[] = [
  "lr",
  "betas",
  "eps",
  "weightDecay",
  "schedule",
  "nonFinite",
];

/** The option names of {@link AdamOptions}. */
export const ADAM_KEYS: readonly string[] = [
  ...COMMON_KEYS,
  "amsgrad",
  "decoupledWeightDecay",
];

/** The option names of AdamW (always decoupled). */
export const ADAMW_KEYS: readonly string[] = ADAM_KEYS.filter((k) =>
  k !== "decoupledWeightDecay"
);

/** The option names of AMSGrad (always with the maximum). */
export const AMSGRAD_KEYS: readonly string[] = ADAM_KEYS.filter((k) =>
  k !== "amsgrad"
);

/** The option names of {@link MicroAdamOptions}. */
export const MICROADAM_KEYS: readonly string[] = [
  ...COMMON_KEYS,
  "window",
  "density",
  "topkBlockSize",
  "efBlockSize",
  "dtype",
];

/** Largest EF block size Q (the kernels hold it in a u32). */
export const MAX_EF_BLOCK = 2 ** 31;

/**
 * Checks a learning rate: a number >= 0 that is finite as an f32 (the
 * kernels' type).
 *
 * @example
 * ```ts
 * import { checkLr } from "./options.ts";
 * checkLr(1e-3); // fine
 * try { checkLr(-1); } catch (e) { console.log((e as Error).message); }
 * ```
 */
export function checkLr(lr: unknown, where = "lr"): number {
  return checkF32(lr, where, { min: 0 });
}

/**
 * Checks a weight decay: a number >= 0 that is finite as an f32.
 *
 * @example
 * ```ts
 * import { checkWeightDecay } from "./options.ts";
 * console.log(checkWeightDecay(0.01)); // 0.01
 * ```
 */
export function checkWeightDecay(
  wd: unknown,
  where = "weightDecay",
): number {
  return checkF32(wd, where, { min: 0 });
}

/**
 * Checks a schedule: a function (or undefined for a constant lr).
 *
 * @example
 * ```ts
 * import { checkSchedule } from "./options.ts";
 * console.log(checkSchedule(undefined)); // undefined
 * ```
 */
export function checkSchedule(
  schedule: unknown,
  where = "schedule",
): Schedule | undefined {
  if (schedule !== undefined && typeof schedule !== "function") {
    throw new InvalidOptionError(
      `${where}: expected a function (step) => factor, got ${
        describe(schedule)
      }`,
    );
  }
  return schedule as Schedule | undefined;
}

function checkBetas(value: unknown): readonly [number, number] {
  if (!Array.isArray(value) || value.length !== 2) {
    throw new InvalidOptionError(
      `betas: expected two numbers in [0, 1), got ${describe(value)}`,
    );
  }
  value.forEach((b, i) => {
    if (typeof b !== "number" || !(b >= 0 && b < 1)) {
      throw new InvalidOptionError(
        `betas: expected two numbers in [0, 1), got ${describe(value)}`,
      );
    }
    if (Math.fround(b) >= 1) {
      throw new InvalidOptionError(
        `betas[${i}]: ${b} rounds to 1 in f32, the type the kernels compute in; expected a value whose f32 is below 1 (at most ${
          1 - 2 ** -24
        })`,
      );
    }
  });
  return [value[0], value[1]] as const;
}

// MicroAdam (`allowUnchecked` false) checks its gradients inside its first
// kernel, at no cost, so only the Adam family may turn the check off.
function checkNonFinite(
  value: unknown,
  allowUnchecked: boolean,
): NonFinitePolicy {
  if (value === "skip" || value === "error") return value;
  if (value === "unchecked") {
    if (allowUnchecked) return value;
    throw new InvalidOptionError(
      `nonFinite: MicroAdam checks gradients inside its first kernel at no extra cost; expected "skip" or "error", got "unchecked"`,
    );
  }
  throw new InvalidOptionError(
    `nonFinite: expected ${
      allowUnchecked ? '"skip", "error" or "unchecked"' : '"skip" or "error"'
    }, got ${describe(value)}`,
  );
}

function checkCommon(
  o: Record<string, unknown>,
  defaultWd: number,
  allowUnchecked: boolean,
) {
  const lr = checkLr(given(o, "lr", 1e-3));
  const betas = checkBetas(given(o, "betas", [0.9, 0.999]));
  // ε keeps 0/0 out of the update (a zero gradient, a coordinate never
  // selected): it must survive as a normal f32, which no GPU flushes to 0.
  const eps = given(o, "eps", 1e-8);
  checkF32(eps, "eps", { minExclusive: 0 });
  if (Math.fround(eps as number) < F32_MIN_NORMAL) {
    throw new InvalidOptionError(
      `eps: ${eps} is below the smallest normal f32 (${F32_MIN_NORMAL}); it would round or flush to 0 on the GPU and make 0/0 in the update`,
    );
  }
  const weightDecay = checkWeightDecay(given(o, "weightDecay", defaultWd));
  const nonFinite = checkNonFinite(
    given(o, "nonFinite", "skip"),
    allowUnchecked,
  );
  const schedule = checkSchedule(given(o, "schedule", undefined));
  return {
    lr,
    betas,
    eps: eps as number,
    weightDecay,
    nonFinite: nonFinite as NonFinitePolicy,
    schedule,
  };
}

/**
 * Validates Adam-family options and fills in defaults. Keys outside `keys`
 * (e.g. `amsgrad` for AMSGrad, which always keeps the maximum), `null`
 * values and values of the wrong type are {@link InvalidOptionError}s.
 *
 * @example
 * ```ts
 * import { resolveAdamOptions } from "./options.ts";
 * console.log(resolveAdamOptions({ lr: 0.01 }).betas); // [0.9, 0.999]
 * console.log(resolveAdamOptions({ nonFinite: "unchecked" }).nonFinite); // "unchecked"
 * ```
 */
export function resolveAdamOptions(
  options: AdamOptions = {},
  defaults: Pick<
    AdamOptions,
    "weightDecay" | "decoupledWeightDecay" | "amsgrad"
  > = {},
  keys: readonly string[] = ADAM_KEYS,
  what = "Adam options",
): ResolvedAdamOptions {
  const o = checkKeys(options, keys, what);
  const common = checkCommon(o, defaults.weightDecay ?? 0, true);
  return {
    ...common,
    amsgrad: checkBoolean(
      given(o, "amsgrad", defaults.amsgrad ?? false),
      "amsgrad",
    ),
    decoupledWeightDecay: checkBoolean(
      given(
        o,
        "decoupledWeightDecay",
        defaults.decoupledWeightDecay ?? false,
      ),
      "decoupledWeightDecay",
    ),
  };
}

/**
 * Validates MicroAdam options and fills in defaults. Unknown keys (other
 * than `extraKeys`), `null` values and values of the wrong type are
 * {@link InvalidOptionError}s; every integer is bounded by what the kernels
 * hold. `nonFinite: "unchecked"` is refused too (see
 * {@link CheckedNonFinitePolicy}).
 *
 * @example
 * ```ts
 * import { resolveMicroAdamOptions } from "./options.ts";
 * const o = resolveMicroAdamOptions({ lr: 1e-4 });
 * console.log(o.window, o.density, o.topkBlockSize, o.efBlockSize); // 10 0.01 4096 4096
 * try {
 *   resolveMicroAdamOptions({ nonFinite: "unchecked" as "skip" });
 * } catch (e) {
 *   console.log((e as Error).name); // "InvalidOptionError"
 * }
 * ```
 */
export function resolveMicroAdamOptions(
  options: MicroAdamOptions = {},
  extraKeys: readonly string[] = [],
  what = "MicroAdam options",
): ResolvedMicroAdamOptions {
  const o = checkKeys(options, [...MICROADAM_KEYS, ...extraKeys], what);
  const common = checkCommon(o, 0, false);
  const window = checkInteger(given(o, "window", 10), "window (m)", 1, 65535);
  const density = given(o, "density", 0.01);
  if (typeof density !== "number" || !(density > 0 && density <= 1)) {
    throw new InvalidOptionError(
      `density: expected a number in (0, 1], got ${describe(density)}`,
    );
  }
  const topkBlockSize = given(o, "topkBlockSize", 4096);
  if (
    typeof topkBlockSize !== "number" || !Number.isInteger(topkBlockSize) ||
    topkBlockSize < 1 || topkBlockSize > MAX_TOPK_BLOCK
  ) {
    throw new InvalidOptionError(
      `topkBlockSize (D): expected an integer in [1, ${MAX_TOPK_BLOCK}] (indices are u16), got ${
        describe(topkBlockSize)
      }`,
    );
  }
  const efBlockSize = given(o, "efBlockSize", 4096);
  if (
    typeof efBlockSize !== "number" || !Number.isInteger(efBlockSize) ||
    efBlockSize < 2 || efBlockSize % 2 !== 0 || efBlockSize > MAX_EF_BLOCK
  ) {
    throw new InvalidOptionError(
      `efBlockSize (Q): expected an even integer in [2, ${MAX_EF_BLOCK}], got ${
        describe(efBlockSize)
      }`,
    );
  }
  const dtype = given(o, "dtype", "f32");
  if (dtype !== "f32" && dtype !== "bf16") {
    throw new InvalidOptionError(
      `dtype: expected "f32" or "bf16", got ${describe(dtype)}`,
    );
  }
  return {
    ...common,
    nonFinite: common.nonFinite as CheckedNonFinitePolicy,
    window,
    density,
    topkBlockSize,
    efBlockSize,
    dtype,
  };
}

/**
 * The MicroAdam options that shape its state, as checkpoints record them
 * (shared by the CPU and GPU optimizers, so their states interchange).
 *
 * @example
 * ```ts
 * import { microAdamStateConfig, resolveMicroAdamOptions } from "./options.ts";
 * console.log(microAdamStateConfig(resolveMicroAdamOptions()).window); // 10
 * ```
 */
export function microAdamStateConfig(
  o: ResolvedMicroAdamOptions,
): Record<string, number | string> {
  return {
    window: o.window,
    density: o.density,
    topkBlockSize: o.topkBlockSize,
    efBlockSize: o.efBlockSize,
    dtype: o.dtype,
  };
}
