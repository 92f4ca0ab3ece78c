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

/** A gradient held NaN or ±Infinity; the step was not applied. */
export class NonFiniteGradientError extends Error {
  /** Error name, for logs. */
  override name = "NonFiniteGradientError";
  /** Name (or index) of the first tensor found with a non-finite gradient. */
  readonly tensor: string;
  /** Number of step() calls made when the bad gradient was seen (1-based). */
  readonly call: number;
  /**
   * Builds the message from the tensor and the step call.
   *
   * @param tensor Name (or index) of the offending tensor.
   * @param call The 1-based step() call that carried it.
   */
  constructor(tensor: string, call: number) {
    super(
      `non-finite gradient (NaN or Infinity) in tensor "${tensor}" at step call ${call}; the step was skipped and the optimizer state is unchanged`,
    );
    this.tensor = tensor;
    this.call = call;
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

/** A data file is missing, unreadable or not what it should be; the message names the file. */
export class DatasetError extends Error {
  /** Error name, for logs. */
  override name = "DatasetError";
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
  if (ArrayBuffer.isView(value)) {
    return `${value.constructor.name}(${(value as Uint8Array).length})`;
  }
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
