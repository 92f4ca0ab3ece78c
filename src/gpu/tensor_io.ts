/**
 * Tensors from host data and back: what a user would otherwise write by hand
 * around `createBuffer`, `writeBuffer` (which takes whole 4-byte words, so
 * bf16 data of odd length must be padded) and a mapped readback.
 *
 * @module
 */

import type { DType } from "../core/options.ts";
import { describe, TensorMismatchError } from "../errors.ts";
import { fromBf16Array, toBf16Array } from "../numeric/bf16.ts";
import { readRanges } from "./buffers.ts";
import type { GpuTensor } from "./tensors.ts";

/** Usage of the buffers {@link createTensor} makes: storage, both copy directions. */
export const TENSOR_USAGE: number = GPUBufferUsage.STORAGE |
  GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Options of {@link createTensor}. */
export interface CreateTensorOptions {
  /** Name used in error messages and checkpoints. @default {undefined} (the optimizer uses the tensor's index) */
  name?: string;
  /**
   * Element type of the parameter and gradient buffers. A `Float32Array`
   * given for a bf16 tensor is rounded to bf16 (nearest even).
   * @default {"bf16" for a Uint16Array (raw bf16 bits), else "f32"}
   */
  dtype?: DType;
  /** Usage flags added to `STORAGE | COPY_SRC | COPY_DST`. @default {0} */
  usage?: number;
}

/** Which of a tensor's two buffers to read or write. */
export type TensorBuffer = "param" | "grad";

const bytesOf = (dtype: DType) => dtype === "bf16" ? 2 : 4;

/** Host data as the bytes of `dtype`, padded with zeros to whole 4-byte words. */
function encode(
  values: Float32Array | Uint16Array,
  dtype: DType,
): Uint8Array<ArrayBuffer> {
  let typed: Float32Array | Uint16Array;
  if (dtype === "bf16") {
    typed = values instanceof Uint16Array ? values : toBf16Array(values);
  } else if (values instanceof Float32Array) {
    typed = values;
  } else {
    throw new TensorMismatchError(
      `an f32 tensor takes a Float32Array, got ${
        describe(values)
      } (raw bf16 bits belong to a tensor of dtype "bf16")`,
    );
  }
  const out = new Uint8Array(Math.max(4, Math.ceil(typed.byteLength / 4) * 4));
  out.set(new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength));
  return out;
}

function checkDType(dtype: unknown): DType {
  if (dtype !== "f32" && dtype !== "bf16") {
    throw new TensorMismatchError(
      `dtype: expected "f32" or "bf16", got ${describe(dtype)}`,
    );
  }
  return dtype;
}

/**
 * Creates a tensor on `device`: a parameter buffer holding `init` and a
 * zeroed gradient buffer of the same size, both `STORAGE | COPY_SRC |
 * COPY_DST`, so every optimizer can batch them. `init` is the initial values
 * (`Float32Array`), raw bf16 bits (`Uint16Array`), or an element count for
 * zeros. Destroy the buffers (`tensor.param.destroy()`, `tensor.grad.destroy()`)
 * when done, or let `device.destroy()` do it.
 *
 * @example
 * ```ts
 * import { createTensor, readTensor, requestDevice } from "../../mod.ts";
 * const device = await requestDevice();
 * const w = createTensor(device, new Float32Array([1, 2, 3]), { name: "w", dtype: "bf16" });
 * console.log(w.length, w.dtype, w.param.size); // 3 bf16 8
 * console.log(await readTensor(device, w)); // Float32Array(3) [ 1, 2, 3 ]
 * device.destroy();
 * ```
 */
export function createTensor(
  device: GPUDevice,
  init: Float32Array | Uint16Array | number,
  options: CreateTensorOptions = {},
): GpuTensor & { dtype: DType } {
  const dtype = checkDType(
    options.dtype ?? (init instanceof Uint16Array ? "bf16" : "f32"),
  );
  const length = initLength(init, "createTensor");
  const size = Math.max(4, Math.ceil(length * bytesOf(dtype) / 4) * 4);
  const usage = TENSOR_USAGE | (options.usage ?? 0);
  const label = options.name ?? "tensor";
  const param = device.createBuffer({ label: `${label} param`, size, usage });
  const grad = device.createBuffer({ label: `${label} grad`, size, usage });
  if (typeof init !== "number") {
    device.queue.writeBuffer(param, 0, encode(init, dtype));
  }
  const tensor: GpuTensor & { dtype: DType } = {
    param,
    grad,
    length,
    dtype,
  };
  if (options.name !== undefined) tensor.name = options.name;
  return tensor;
}

// The element count of a tensor's initial values or count (`fn` names the
// caller in errors).
function initLength(init: unknown, fn: string): number {
  if (typeof init === "number") {
    if (!Number.isSafeInteger(init) || init < 1) {
      throw new TensorMismatchError(
        `${fn}: expected an element count >= 1, got ${describe(init)}`,
      );
    }
    return init;
  }
  if (init instanceof Float32Array || init instanceof Uint16Array) {
    if (init.length === 0) {
      throw new TensorMismatchError(
        `${fn}: expected at least one element, got an empty array`,
      );
    }
    return init.length;
  }
  throw new TensorMismatchError(
    `${fn}: expected a Float32Array, a Uint16Array of bf16 bits or an element count, got ${
      describe(init)
    }`,
  );
}

/** Options of {@link createTensors}. */
export interface CreateTensorsOptions {
  /** One name per tensor (error messages and checkpoints). @default {undefined} (the optimizer uses each tensor's index) */
  names?: readonly string[];
  /**
   * Element type of every tensor; `Float32Array` values given for bf16 are
   * rounded to bf16 (nearest even).
   * @default {"bf16" when every init is a Uint16Array (raw bf16 bits), else "f32"}
   */
  dtype?: DType;
  /** Usage flags added to `STORAGE | COPY_SRC | COPY_DST`. @default {0} */
  usage?: number;
  /**
   * Largest byte size of one parameter (and one gradient) buffer; a tensor
   * larger than this gets a pair of its own.
   * @default {the device's maxStorageBufferBindingSize or maxBufferSize, whichever is smaller}
   */
  maxBufferBytes?: number;
}

// Where createTensors starts each tensor in its buffers: WebGPU's largest
// storage-binding offset alignment, so that a batch binds any of them.
const PACK_ALIGN = 256;

/**
 * Creates tensors packed into shared buffers: one parameter buffer and one
 * gradient buffer for as many consecutive tensors as fit `maxBufferBytes`
 * (each tensor on a 256-byte boundary), parameters from `inits` as in
 * {@link createTensor}, gradients zero. Every optimizer takes tensors that
 * share buffers as one batch, so a model's step is a few dispatches however
 * many tensors it has (on an NVIDIA H200, MicroAdam over the LLaMA-2-7B
 * tensor shapes: 41.5 ms f32 and 42.4 ms bf16 packed, 43.3 and 45.9 ms with
 * each tensor in buffers of its own; bench/RESULTS.md, round 20). The
 * tensors share their buffers: destroy each distinct buffer once.
 *
 * @example
 * ```ts
 * import { createTensors, readTensor, requestDevice } from "../../mod.ts";
 * const device = await requestDevice();
 * const [w, b] = createTensors(device, [new Float32Array([1, 2, 3]), 2], { names: ["w", "b"] });
 * console.log(w.param === b.param, w.offset, b.offset); // true 0 64
 * console.log(await readTensor(device, w), await readTensor(device, b)); // Float32Array(3) [ 1, 2, 3 ] Float32Array(2) [ 0, 0 ]
 * device.destroy();
 * ```
 */
export function createTensors(
  device: GPUDevice,
  inits: readonly (Float32Array | Uint16Array | number)[],
  options: CreateTensorsOptions = {},
): (GpuTensor & { dtype: DType; offset: number })[] {
  if (!Array.isArray(inits)) {
    throw new TensorMismatchError(
      `createTensors: expected an array of initial values or element counts, got ${
        describe(inits)
      }`,
    );
  }
  const names = options.names;
  if (names !== undefined && names.length !== inits.length) {
    throw new TensorMismatchError(
      `createTensors: expected one name per tensor (${inits.length}), got ${names.length}`,
    );
  }
  const dtype = checkDType(
    options.dtype ??
      (inits.length && inits.every((x) => x instanceof Uint16Array)
        ? "bf16"
        : "f32"),
  );
  const lengths = inits.map((x, i) => initLength(x, `createTensors[${i}]`));
  const limit = Math.min(
    device.limits.maxStorageBufferBindingSize,
    device.limits.maxBufferSize,
  );
  const max = options.maxBufferBytes ?? limit;
  if (!Number.isSafeInteger(max) || max < PACK_ALIGN || max > limit) {
    throw new TensorMismatchError(
      `createTensors: maxBufferBytes: expected an integer in [${PACK_ALIGN}, ${limit}] (the device's limits), got ${
        describe(options.maxBufferBytes)
      }`,
    );
  }
  const bpe = bytesOf(dtype);
  // Every init encoded (and so checked) before any buffer exists.
  const data = inits.map((x) =>
    typeof x === "number" ? undefined : encode(x, dtype)
  );
  // Consecutive tensors share a pair while they fit; a larger one is alone.
  const pairs: { bytes: number }[] = [];
  const where = lengths.map((n) => {
    const bytes = n * bpe;
    const open = pairs.at(-1);
    let at = open ? Math.ceil(open.bytes / PACK_ALIGN) * PACK_ALIGN : 0;
    if (!open || at + bytes > max) {
      pairs.push({ bytes: 0 });
      at = 0;
    }
    pairs[pairs.length - 1].bytes = at + bytes;
    return { pair: pairs.length - 1, at };
  });
  const usage = TENSOR_USAGE | (options.usage ?? 0);
  const buffers = pairs.map((p, i) => {
    const size = Math.max(4, Math.ceil(p.bytes / 4) * 4);
    return {
      param: device.createBuffer({ label: `tensors ${i} params`, size, usage }),
      grad: device.createBuffer({ label: `tensors ${i} grads`, size, usage }),
    };
  });
  return inits.map((_, i) => {
    const { param, grad } = buffers[where[i].pair];
    const bytes = data[i];
    if (bytes) device.queue.writeBuffer(param, where[i].at, bytes);
    const tensor: GpuTensor & { dtype: DType; offset: number } = {
      param,
      grad,
      length: lengths[i],
      offset: where[i].at / bpe,
      dtype,
    };
    if (names !== undefined) tensor.name = names[i];
    return tensor;
  });
}

function tensorDType(tensor: GpuTensor): DType {
  return tensor.dtype === undefined ? "f32" : checkDType(tensor.dtype);
}

/**
 * Writes host values into a tensor's gradient (or, with `which: "param"`,
 * its parameters). `Float32Array` values are rounded to bf16 for a bf16
 * tensor; a `Uint16Array` is taken as raw bf16 bits. The write is queued (as
 * `queue.writeBuffer`), so it lands before any work submitted after it.
 *
 * @example
 * ```ts
 * import { createTensor, readTensor, requestDevice, writeTensor } from "../../mod.ts";
 * const device = await requestDevice();
 * const w = createTensor(device, 2);
 * writeTensor(device, w, new Float32Array([0.5, -1]));
 * console.log(await readTensor(device, w, "grad")); // Float32Array(2) [ 0.5, -1 ]
 * device.destroy();
 * ```
 */
export function writeTensor(
  device: GPUDevice,
  tensor: GpuTensor,
  values: Float32Array | Uint16Array,
  which: TensorBuffer = "grad",
): void {
  const dtype = tensorDType(tensor);
  if (values.length !== tensor.length) {
    throw new TensorMismatchError(
      `writeTensor: tensor ${
        tensor.name ? `"${tensor.name}" ` : ""
      }has ${tensor.length} elements, got ${values.length} values`,
    );
  }
  const bytes = encode(values, dtype);
  const at = (tensor.offset ?? 0) * bytesOf(dtype);
  if (at % 4 !== 0) {
    throw new TensorMismatchError(
      `writeTensor: a bf16 tensor must start on a 4-byte boundary (even offset), got offset ${tensor.offset}`,
    );
  }
  const buffer = which === "param" ? tensor.param : tensor.grad;
  if (at + bytes.byteLength > buffer.size) {
    throw new TensorMismatchError(
      `writeTensor: the ${which} buffer is ${buffer.size} bytes, ${
        at + bytes.byteLength
      } are needed (offset ${at} + ${bytes.byteLength})`,
    );
  }
  device.queue.writeBuffer(buffer, at, bytes);
}

/**
 * Reads a tensor's parameters (or gradient) back as f32 values; bf16 values
 * are widened exactly (`toBf16Array` recovers their bits). One submit and one
 * map: call it when you need the values, not every step.
 *
 * @example
 * ```ts
 * import { createTensor, readTensor, requestDevice } from "../../mod.ts";
 * const device = await requestDevice();
 * const w = createTensor(device, new Float32Array([1.5, 2.5]));
 * console.log(await readTensor(device, w)); // Float32Array(2) [ 1.5, 2.5 ]
 * device.destroy();
 * ```
 */
export async function readTensor(
  device: GPUDevice,
  tensor: GpuTensor,
  which: TensorBuffer = "param",
): Promise<Float32Array<ArrayBuffer>> {
  const dtype = tensorDType(tensor);
  const bpe = bytesOf(dtype);
  const start = (tensor.offset ?? 0) * bpe;
  const offset = Math.floor(start / 4) * 4;
  const end = Math.ceil((start + tensor.length * bpe) / 4) * 4;
  const buffer = which === "param" ? tensor.param : tensor.grad;
  const [bytes] = await readRanges(device, [{
    buffer,
    offset,
    size: end - offset,
  }]);
  const from = start - offset;
  if (dtype === "bf16") {
    return fromBf16Array(
      new Uint16Array(bytes.buffer, bytes.byteOffset + from, tensor.length),
    );
  }
  return new Float32Array(
    bytes.buffer as ArrayBuffer,
    bytes.byteOffset,
    tensor.length,
  );
}
