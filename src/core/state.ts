/**
 * The optimizer state as plain data: what `stateDict()` returns,
 * `loadStateDict()` takes and checkpoints serialize. CPU and GPU optimizers
 * share it, so a state saved by one loads into the other.
 *
 * @module
 */

/** Scalar values that shape the state (a checkpoint must match them to load). */
export type ConfigValue = number | string | boolean;

/** One tensor's state buffers, as raw little-endian bytes. */
export interface TensorState {
  /** Tensor name (or its index as a string). */
  name: string;
  /** Number of elements. */
  length: number;
  /** Named state buffers, e.g. `window`, `codes`, `stats` or `expAvg`, `expAvgSq`. */
  buffers: Record<string, Uint8Array>;
}

/** Full optimizer state. */
export interface OptimizerState {
  /** Optimizer kind, e.g. `"MicroAdam"`, `"AdamW"`. */
  optimizer: string;
  /** State-shaping hyperparameters (window, density, dtype, amsgrad, …). */
  config: Record<string, ConfigValue>;
  /** Applied steps t (skipped steps excluded). */
  step: number;
  /** step() calls made (drives schedules; includes skipped steps). */
  calls: number;
  /** Steps skipped for non-finite gradients. */
  skipped: number;
  /** Window ring position r (MicroAdam); 0 otherwise. */
  ring: number;
  /** Per-tensor buffers, in optimizer order. */
  tensors: TensorState[];
}

/**
 * Counters an optimizer reports about its own progress.
 *
 * @example
 * ```ts
 * import { AdamCpu, type OptimizerStatus } from "../../mod.ts";
 * const opt = new AdamCpu([{ name: "w", param: new Float32Array(1), grad: new Float32Array([NaN]) }]);
 * opt.step();
 * const s: OptimizerStatus = opt.status();
 * console.log(s); // { step: 0, calls: 1, skipped: 1, lastNonFiniteTensor: "w" }
 * ```
 */
export interface OptimizerStatus {
  /** Applied steps t. */
  step: number;
  /** step() calls made. */
  calls: number;
  /** Steps skipped because a gradient was non-finite. */
  skipped: number;
  /** Name of the first non-finite tensor of the last skipped step, if any. */
  lastNonFiniteTensor?: string;
}
