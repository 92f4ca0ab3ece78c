/**
 * The caller's found-inf flag, `step({ foundInf })`: a word that the caller's
 * own kernels set when they found a non-finite gradient (a gradient scaler's
 * unscale, a norm taken for clipping), as PyTorch's fused optimizers take
 * `found_inf`. It is checked on the host before anything is encoded, then
 * copied into the optimizer's flag buffer ahead of the step's pass, where the
 * prologue reads it: the value is the GPU's when the step runs, with no
 * readback. A copy rather than a binding because a binding's offset must be a
 * multiple of 256 bytes, and the caller's flag may sit anywhere.
 *
 * @module
 */

import { describe, InvalidOptionError } from "../errors.ts";
import { FOUND_INF_WORD } from "../gpu/layout.ts";
import { usageNames } from "../gpu/tensors.ts";

/** Where a caller's found-inf flag is read: 4 bytes of `buffer` at `offset`. */
export interface FoundInfSource {
  /** The caller's buffer (COPY_SRC). */
  buffer: GPUBuffer;
  /** Byte offset of the flag, a multiple of 4. */
  offset: number;
}

/**
 * Checks a `foundInf` step option (a `GPUBuffer`, whose first 4 bytes are
 * the flag, or a `GPUBufferBinding`) and returns where the flag is.
 * Throws `InvalidOptionError` naming what is wrong.
 *
 * @example
 * ```ts
 * import { requestDevice } from "../gpu/device.ts";
 * import { foundInfSource } from "./found_inf.ts";
 * const device = await requestDevice();
 * const flag = device.createBuffer({ size: 16, usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.STORAGE });
 * console.log(foundInfSource({ buffer: flag, offset: 8 }).offset); // 8
 * try {
 *   foundInfSource({ buffer: flag, offset: 14 });
 * } catch (e) {
 *   console.log((e as Error).name); // "InvalidOptionError"
 * }
 * device.destroy();
 * ```
 */
export function foundInfSource(value: unknown): FoundInfSource {
  const where = "step options: foundInf";
  let buffer: unknown = value;
  let offset: unknown = 0;
  if (!(value instanceof GPUBuffer)) {
    const b = value as Partial<GPUBufferBinding> | null;
    if (
      typeof b !== "object" || b === null || !(b.buffer instanceof GPUBuffer)
    ) {
      throw new InvalidOptionError(
        `${where}: expected a GPUBuffer or { buffer: GPUBuffer, offset?: number }, got ${
          describe(value)
        }`,
      );
    }
    buffer = b.buffer;
    offset = b.offset ?? 0;
    if (b.size !== undefined && !(typeof b.size === "number" && b.size >= 4)) {
      throw new InvalidOptionError(
        `${where}: size: the flag is 4 bytes, got a binding of ${
          describe(b.size)
        }`,
      );
    }
  }
  const buf = buffer as GPUBuffer;
  if (
    typeof offset !== "number" || !Number.isInteger(offset) || offset < 0 ||
    offset % 4 !== 0 || offset + 4 > buf.size
  ) {
    throw new InvalidOptionError(
      `${where}: offset: expected a multiple of 4 with the flag's 4 bytes inside the buffer's ${buf.size}, got ${
        describe(offset)
      }`,
    );
  }
  if ((buf.usage & GPUBufferUsage.COPY_SRC) === 0) {
    throw new InvalidOptionError(
      `${where}: the buffer needs GPUBufferUsage.COPY_SRC (the flag is copied), its usage is ${
        usageNames(buf.usage)
      }`,
    );
  }
  if (buf.mapState !== "unmapped") {
    throw new InvalidOptionError(
      `${where}: the buffer is ${buf.mapState}; unmap it before step()`,
    );
  }
  return { buffer: buf, offset };
}

/**
 * Encodes the copy of the caller's flag into word FOUND_INF_WORD of the
 * optimizer's flag buffer, before the step's pass.
 */
export function encodeFoundInf(
  encoder: GPUCommandEncoder,
  source: FoundInfSource,
  flags: GPUBuffer,
): void {
  encoder.copyBufferToBuffer(
    source.buffer,
    source.offset,
    flags,
    4 * FOUND_INF_WORD,
    4,
  );
}
