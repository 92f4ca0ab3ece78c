/**
 * Hyperparameters of every optimizer, their defaults, and their validation.
 * One place, so CPU and GPU optimizers accept and reject exactly the same
 * options.
 *
 * @module
 */

import { describe, InvalidOptionError } from "../errors.ts";
import { MAX_TOPK_BLOCK } from "./limits.ts";
import type { Schedule } from "./schedule.ts";

/** What to do when a gradient holds NaN or ±Infinity. */
export type NonFinitePolicy = "skip" | "error";

/** Options every optimizer shares. */
export interface CommonOptions {
  /** Learning rate (base value; groups and schedules scale it). @default {1e-3} */
  lr?: number;
  /** Decay rates of the first and second moments, each in [0, 1). @default {[0.9, 0.999]} */
  betas?: readonly [number, number];
  /** Added to the denominator for stability. @default {1e-8} */
  eps?: number;
  /** Weight decay; decoupled (AdamW-style) unless stated. @default {0} */
  weightDecay?: number;
  /** Learning-rate schedule applied to every group without its own. @default {undefined} (constant) */
  schedule?: Schedule;
  /**
   * On a non-finite gradient: `"skip"` leaves the state exactly as it was and
   * counts the skip (see `status()`); `"error"` does the same and then throws
   * {@link NonFiniteGradientError}.
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
  /** Error-feedback quantization block size Q (even, ≥ 2). @default {4096} */
  efBlockSize?: number;
  /**
   * `"f32"`: parameters and gradients are f32 (spec §B). `"bf16"`: they are
   * bf16, packed two per u32 (spec §A, bit-exact with the authors' code on CPU).
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

/**
 * Checks a learning rate: finite and ≥ 0.
 *
 * @example
 * ```ts
 * import { checkLr } from "./options.ts";
 * checkLr(1e-3); // fine
 * try { checkLr(-1); } catch (e) { console.log((e as Error).message); }
 * ```
 */
export function checkLr(lr: unknown, where = "lr"): number {
  if (typeof lr !== "number" || !Number.isFinite(lr) || lr < 0) {
    throw new InvalidOptionError(
      `${where}: expected a finite number >= 0, got ${describe(lr)}`,
    );
  }
  return lr;
}

/**
 * Checks a weight decay: finite and ≥ 0.
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
  if (typeof wd !== "number" || !Number.isFinite(wd) || wd < 0) {
    throw new InvalidOptionError(
      `${where}: expected a finite number >= 0, got ${describe(wd)}`,
    );
  }
  return wd;
}

function checkCommon(o: CommonOptions, defaultWd: number) {
  const lr = checkLr(o.lr ?? 1e-3);
  const betas = o.betas ?? [0.9, 0.999];
  if (
    !Array.isArray(betas) || betas.length !== 2 ||
    !betas.every((b) => typeof b === "number" && b >= 0 && b < 1)
  ) {
    throw new InvalidOptionError(
      `betas: expected two numbers in [0, 1), got ${describe(betas)}`,
    );
  }
  const eps = o.eps ?? 1e-8;
  if (typeof eps !== "number" || !Number.isFinite(eps) || eps < 0) {
    throw new InvalidOptionError(
      `eps: expected a finite number >= 0, got ${describe(eps)}`,
    );
  }
  const weightDecay = checkWeightDecay(o.weightDecay ?? defaultWd);
  const nonFinite = o.nonFinite ?? "skip";
  if (nonFinite !== "skip" && nonFinite !== "error") {
    throw new InvalidOptionError(
      `nonFinite: expected "skip" or "error", got ${describe(nonFinite)}`,
    );
  }
  if (o.schedule !== undefined && typeof o.schedule !== "function") {
    throw new InvalidOptionError(
      `schedule: expected a function (step) => factor, got ${
        describe(o.schedule)
      }`,
    );
  }
  return {
    lr,
    betas: [betas[0], betas[1]] as const,
    eps,
    weightDecay,
    nonFinite,
    schedule: o.schedule,
  };
}

/**
 * Validates Adam-family options and fills in defaults.
 *
 * @example
 * ```ts
 * import { resolveAdamOptions } from "./options.ts";
 * console.log(resolveAdamOptions({ lr: 0.01 }).betas); // [0.9, 0.999]
 * ```
 */
export function resolveAdamOptions(
  o: AdamOptions = {},
  defaults: { weightDecay?: number; decoupledWeightDecay?: boolean } = {},
): ResolvedAdamOptions {
  const common = checkCommon(o, defaults.weightDecay ?? 0);
  return {
    ...common,
    amsgrad: Boolean(o.amsgrad ?? false),
    decoupledWeightDecay: Boolean(
      o.decoupledWeightDecay ?? defaults.decoupledWeightDecay ?? false,
    ),
  };
}

/**
 * Validates MicroAdam options and fills in defaults.
 *
 * @example
 * ```ts
 * import { resolveMicroAdamOptions } from "./options.ts";
 * const o = resolveMicroAdamOptions({ lr: 1e-4 });
 * console.log(o.window, o.density, o.topkBlockSize, o.efBlockSize); // 10 0.01 4096 4096
 * ```
 */
export function resolveMicroAdamOptions(
  o: MicroAdamOptions = {},
): ResolvedMicroAdamOptions {
  const common = checkCommon(o, 0);
  const window = o.window ?? 10;
  if (!Number.isInteger(window) || window < 1 || window > 65535) {
    throw new InvalidOptionError(
      `window (m): expected an integer in [1, 65535], got ${describe(window)}`,
    );
  }
  const density = o.density ?? 0.01;
  if (typeof density !== "number" || !(density > 0 && density <= 1)) {
    throw new InvalidOptionError(
      `density: expected a number in (0, 1], got ${describe(density)}`,
    );
  }
  const topkBlockSize = o.topkBlockSize ?? 4096;
  if (
    !Number.isInteger(topkBlockSize) || topkBlockSize < 1 ||
    topkBlockSize > MAX_TOPK_BLOCK
  ) {
    throw new InvalidOptionError(
      `topkBlockSize (D): expected an integer in [1, ${MAX_TOPK_BLOCK}] (indices are u16), got ${
        describe(topkBlockSize)
      }`,
    );
  }
  const efBlockSize = o.efBlockSize ?? 4096;
  if (
    !Number.isInteger(efBlockSize) || efBlockSize < 2 || efBlockSize % 2 !== 0
  ) {
    throw new InvalidOptionError(
      `efBlockSize (Q): expected an even integer >= 2, got ${
        describe(efBlockSize)
      }`,
    );
  }
  const dtype = o.dtype ?? "f32";
  if (dtype !== "f32" && dtype !== "bf16") {
    throw new InvalidOptionError(
      `dtype: expected "f32" or "bf16", got ${describe(dtype)}`,
    );
  }
  return { ...common, window, density, topkBlockSize, efBlockSize, dtype };
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
