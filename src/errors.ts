/**
 * Error types thrown by microadam. Each message names what was expected and
 * what came, so a failing call explains itself.
 *
 * @module
 */

/** A hyperparameter or option is outside its valid range. */
export class InvalidOptionError extends RangeError {
  /** Error name, for logs. */
  override name = "InvalidOptionError";
}

/** A tensor or buffer does not match what the optimizer expects. */
export class TensorMismatchError extends TypeError {
  /** Error name, for logs. */
  override name = "TensorMismatchError";
}

/**
 * A gradient held NaN or ±Infinity (or the caller's `foundInf` flag said
 * so); the step was not applied.
 *
 * @example
 * ```ts
 * import { NonFiniteGradientError } from "./errors.ts";
 * const e = new NonFiniteGradientError("w", 3);
 * console.log(e.message.startsWith('non-finite gradient (NaN or Infinity) in tensor "w" at step call 3')); // true
 * console.log(new NonFiniteGradientError("", 4, true).foundInf); // true
 * ```
 */
export class NonFiniteGradientError extends Error {
  /** Error name, for logs. */
  override name = "NonFiniteGradientError";
  /**
   * Name (or index) of the first tensor found with a non-finite gradient;
   * `""` when the caller's `foundInf` flag reported it.
   */
  readonly tensor: string;
  /** Number of step() calls made when the bad gradient was seen (1-based). */
  readonly call: number;
  /** Whether the `foundInf` flag given to `step()` reported it, not the optimizer's own check. */
  readonly foundInf: boolean;
  /**
   * Builds the message from the tensor and the step call.
   *
   * @param tensor Name (or index) of the offending tensor (ignored with `foundInf`).
   * @param call The 1-based step() call that carried it.
   * @param foundInf The caller's `foundInf` flag reported it.
   */
  constructor(tensor: string, call: number, foundInf = false) {
    super(
      foundInf
        ? `non-finite gradient reported by the foundInf flag given to step call ${call}; the step was skipped and the optimizer state is unchanged`
        : `non-finite gradient (NaN or Infinity) in tensor "${tensor}" at step call ${call}; the step was skipped and the optimizer state is unchanged`,
    );
    this.tensor = foundInf ? "" : tensor;
    this.call = call;
    this.foundInf = foundInf;
  }
}

/** No WebGPU adapter or device could be obtained, or the device was lost. */
export class GpuUnavailableError extends Error {
  /** Error name, for logs. */
  override name = "GpuUnavailableError";
}

/** A checkpoint is corrupt, truncated, or was written by another optimizer/config/version. */
export class CheckpointError extends Error {
  /** Error name, for logs. */
  override name = "CheckpointError";
}

/**
 * A data file is missing, unreadable or not what it should be; the message
 * names the file.
 *
 * @example
 * ```ts
 * import { DatasetError } from "./errors.ts";
 * // What loadFashionMnist throws for a truncated label file, for example:
 * const e = new DatasetError("train-labels-idx1-ubyte.gz: 59999 labels, expected 60000");
 * console.log(e.name, e instanceof Error); // DatasetError true
 * ```
 */
export class DatasetError extends Error {
  /** Error name, for logs. */
  override name = "DatasetError";
}

/**
 * The GPU rejected work this optimizer encoded or a readback it asked for (a
 * WebGPU validation or out-of-memory error: a tensor buffer destroyed or
 * mapped, a finished encoder, bad timestamp writes, buffers of another
 * device, …). The step in question did not run; the message names the cause.
 */
export class GpuCommandError extends Error {
  /** Error name, for logs. */
  override name = "GpuCommandError";
}

/**
 * The optimizer was used after `dispose()` (or disposed while a call was
 * pending).
 *
 * @example
 * ```ts
 * import { DisposedError } from "./errors.ts";
 * // What opt.step(), status() or a pending save throws once opt.dispose() ran:
 * const e = new DisposedError("AdamCpu: this optimizer has been disposed; create a new one");
 * console.log(e.name, e instanceof Error); // DisposedError true
 * ```
 */
export class DisposedError extends Error {
  /** Error name, for logs. */
  override name = "DisposedError";
}

/**
 * A step would pass a limit the optimizer cannot represent: more step calls
 * than its u32 counters hold, or more steps encoded into callers' encoders
 * than may wait for one submit.
 */
export class StepLimitError extends RangeError {
  /** Error name, for logs. */
  override name = "StepLimitError";
}

/**
 * Formats a value for an error message: numbers as written, strings quoted,
 * everything else through JSON.
 *
 * @example
 * ```ts
 * import { describe } from "./errors.ts";
 * console.log(describe(NaN)); // "NaN"
 * ```
 */
export function describe(value: unknown): string {
  if (typeof value === "number") return String(value);
  if (typeof value === "string") return JSON.stringify(value);
  if (value === undefined) return "undefined";
  if (value === null) return "null";
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "function") return "a function";
  if (typeof value === "symbol") return String(value);
  if (ArrayBuffer.isView(value)) {
    return `${value.constructor.name}(${(value as Uint8Array).length})`;
  }
  // A class instance (a GPUBuffer, a Map, …) by its class: JSON shows "{}".
  const proto = typeof value === "object" ? Object.getPrototypeOf(value) : null;
  if (
    proto !== null && proto !== Object.prototype && proto !== Array.prototype
  ) {
    const name = proto?.constructor?.name;
    if (name) return `a ${name}`;
  }
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
