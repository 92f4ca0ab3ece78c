/**
 * Parameter tensors on the GPU: the user's view (a parameter buffer, a
 * gradient buffer, a length and an optional element offset) and its
 * validation.
 *
 * @module
 */

import type { DType } from "../core/options.ts";
import { describe, TensorMismatchError } from "../errors.ts";

/** One parameter tensor living in GPU buffers. */
export interface GpuTensor {
  /** Buffer holding the parameters (needs STORAGE usage; COPY_SRC|COPY_DST lets small tensors be batched). */
  param: GPUBuffer;
  /** Buffer holding the gradient (needs STORAGE usage). */
  grad: GPUBuffer;
  /** Number of elements. */
  length: number;
  /** Element offset of the tensor in both buffers (even for bf16). @default {0} */
  offset?: number;
  /** Name used in error messages and checkpoints. @default {the tensor's index} */
  name?: string;
  /**
   * Element type of `param` and `grad` (set by `createTensor`). When
   * given, an optimizer of another element type refuses the tensor.
   * @default {undefined} (whatever the optimizer expects)
   */
  dtype?: DType;
}

/** A validated tensor with its position in the optimizer. */
export interface PlacedTensor {
  /** Index in optimizer order (groups flattened). */
  index: number;
  /** Name (or index as a string). */
  name: string;
  /** Whether the user gave the name (checkpoints then match it by name). */
  named: boolean;
  /** Param group index. */
  group: number;
  /** Parameter buffer. */
  param: GPUBuffer;
  /** Gradient buffer. */
  grad: GPUBuffer;
  /** Element count. */
  length: number;
  /** Element offset in both buffers. */
  offset: number;
}

// GPUBufferUsage's flags are not enumerable in Deno, so list them.
const USAGE_FLAGS = [
  "MAP_READ",
  "MAP_WRITE",
  "COPY_SRC",
  "COPY_DST",
  "INDEX",
  "VERTEX",
  "UNIFORM",
  "STORAGE",
  "INDIRECT",
  "QUERY_RESOLVE",
] as const;

/**
 * A buffer usage as its flags' names, for error messages.
 *
 * @example
 * ```ts
 * import { usageNames } from "./tensors.ts";
 * console.log(usageNames(GPUBufferUsage.COPY_SRC | GPUBufferUsage.STORAGE)); // "COPY_SRC|STORAGE"
 * console.log(usageNames(0)); // "none"
 * ```
 */
export function usageNames(usage: number): string {
  const names = USAGE_FLAGS.filter((n) => (usage & GPUBufferUsage[n]) !== 0);
  return names.length ? names.join("|") : "none";
}

/**
 * Validates tensors against the element size and returns them placed.
 * Errors name the tensor and say what was expected and what came.
 *
 * @example
 * ```ts
 * import { requestDevice } from "./device.ts";
 * import { validateTensors } from "./tensors.ts";
 * const device = await requestDevice();
 * const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
 * const param = device.createBuffer({ size: 16, usage });
 * const grad = device.createBuffer({ size: 16, usage });
 * console.log(validateTensors([[{ param, grad, length: 4 }]], 4)[0].name); // "0"
 * device.destroy();
 * ```
 */
export function validateTensors(
  groups: GpuTensor[][],
  bytesPerElement: 2 | 4,
): PlacedTensor[] {
  const placed: PlacedTensor[] = [];
  groups.forEach((tensors, group) => {
    for (const t of tensors) {
      const index = placed.length;
      const name = t?.name ?? String(index);
      const where = `tensor ${index} ("${name}")`;
      if (typeof t !== "object" || t === null) {
        throw new TensorMismatchError(
          `${where}: expected { param, grad, length }, got ${describe(t)}`,
        );
      }
      for (const key of ["param", "grad"] as const) {
        const b = t[key];
        if (!(b instanceof GPUBuffer)) {
          throw new TensorMismatchError(
            `${where}: ${key} must be a GPUBuffer, got ${describe(b)}`,
          );
        }
        if ((b.usage & GPUBufferUsage.STORAGE) === 0) {
          throw new TensorMismatchError(
            `${where}: ${key} buffer needs GPUBufferUsage.STORAGE, its usage is ${
              usageNames(b.usage)
            }`,
          );
        }
      }
      if (t.name !== undefined && typeof t.name !== "string") {
        throw new TensorMismatchError(
          `tensor ${index}: name must be a string, got ${describe(t.name)}`,
        );
      }
      const want = bytesPerElement === 2 ? "bf16" : "f32";
      if (t.dtype !== undefined && t.dtype !== want) {
        throw new TensorMismatchError(
          `${where}: is a ${
            describe(t.dtype)
          } tensor, this optimizer updates ${want} tensors${
            want === "bf16" ? "" : ' (MicroAdam takes bf16 with dtype: "bf16")'
          }`,
        );
      }
      if (t.param === t.grad) {
        throw new TensorMismatchError(
          `${where}: param and grad must be different buffers`,
        );
      }
      if (!Number.isInteger(t.length) || t.length < 1) {
        throw new TensorMismatchError(
          `${where}: length must be an integer >= 1, got ${describe(t.length)}`,
        );
      }
      const offset = t.offset ?? 0;
      if (!Number.isInteger(offset) || offset < 0) {
        throw new TensorMismatchError(
          `${where}: offset must be an integer >= 0, got ${describe(offset)}`,
        );
      }
      if (bytesPerElement === 2 && offset % 2 !== 0) {
        throw new TensorMismatchError(
          `${where}: bf16 tensors are packed two per u32, so offset must be even, got ${offset}`,
        );
      }
      const end = Math.ceil((offset + t.length) * bytesPerElement / 4) * 4;
      for (const key of ["param", "grad"] as const) {
        if (t[key].size < end) {
          throw new TensorMismatchError(
            `${where}: ${key} buffer is ${
              t[key].size
            } bytes, expected at least ${end} (offset ${offset} + length ${t.length} elements of ${bytesPerElement} bytes, rounded up to 4)`,
          );
        }
      }
      placed.push({
        index,
        name,
        named: t.name !== undefined,
        group,
        param: t.param,
        grad: t.grad,
        length: t.length,
        offset,
      });
    }
  });
  checkOverlaps(placed, bytesPerElement);
  return placed;
}

function checkOverlaps(placed: PlacedTensor[], bpe: number): void {
  const byBuffer = new Map<GPUBuffer, PlacedTensor[]>();
  for (const t of placed) {
    for (const b of [t.param, t.grad]) {
      const list = byBuffer.get(b) ?? [];
      list.push(t);
      byBuffer.set(b, list);
    }
  }
  for (const list of byBuffer.values()) {
    const sorted = [...list].sort((a, b) => a.offset - b.offset);
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1];
      const cur = sorted[i];
      // bf16 words are written whole: a tensor must not start in the word
      // where the previous one ends.
      const prevEnd = Math.ceil((prev.offset + prev.length) * bpe / 4) * 4;
      if (cur.offset * bpe < prevEnd) {
        throw new TensorMismatchError(
          `tensors ${prev.index} ("${prev.name}") and ${cur.index} ("${cur.name}") overlap in the same buffer (elements ${prev.offset}..${
            prev.offset + prev.length - 1
          } and ${cur.offset}..${cur.offset + cur.length - 1})`,
        );
      }
      if (prev.param === cur.grad || prev.grad === cur.param) {
        throw new TensorMismatchError(
          `tensors ${prev.index} ("${prev.name}") and ${cur.index} ("${cur.name}") use one buffer both for parameters and for gradients`,
        );
      }
    }
  }
}
