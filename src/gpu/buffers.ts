/**
 * Small buffer helpers: create-and-fill, ranges packed into few buffers,
 * bind groups of buffers, and reading ranges back.
 *
 * @module
 */

import { GpuCommandError } from "../errors.ts";

/**
 * Creates a buffer of at least 4 bytes and writes `data` into it.
 *
 * @example
 * ```ts
 * import { requestDevice } from "./device.ts";
 * import { createFilled, readBuffer } from "./buffers.ts";
 * const device = await requestDevice();
 * const b = createFilled(device, new Uint32Array([7]), GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC, "seven");
 * console.log(new Uint32Array(await readBuffer(device, b))[0]); // 7
 * device.destroy();
 * ```
 */
export function createFilled(
  device: GPUDevice,
  data: ArrayBufferView,
  usage: number,
  label: string,
): GPUBuffer {
  const size = Math.max(4, Math.ceil(data.byteLength / 4) * 4);
  const buffer = device.createBuffer({
    label,
    size,
    usage: usage | GPUBufferUsage.COPY_DST,
  });
  if (data.byteLength) {
    // writeBuffer takes whole words: pad the tail with zeros.
    const padded = new Uint8Array(size);
    padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    device.queue.writeBuffer(buffer, 0, padded);
  }
  return buffer;
}

/** A byte range of a GPU buffer. */
export interface BufferRange {
  /** The buffer (needs COPY_SRC usage). */
  buffer: GPUBuffer;
  /** Byte offset (multiple of 4). */
  offset: number;
  /** Byte length. */
  size: number;
}

/**
 * Reads several buffer ranges back with one submit and one map. A copy the
 * GPU refuses (e.g. from a destroyed buffer) throws {@link GpuCommandError}
 * instead of returning the staging buffer's zeros.
 *
 * @example
 * ```ts
 * import { requestDevice } from "./device.ts";
 * import { createFilled, readRanges } from "./buffers.ts";
 * const device = await requestDevice();
 * const b = createFilled(device, new Uint32Array([1, 2, 3]), GPUBufferUsage.COPY_SRC, "b");
 * const [r] = await readRanges(device, [{ buffer: b, offset: 4, size: 8 }]);
 * console.log(new Uint32Array(r.buffer)); // Uint32Array(2) [ 2, 3 ]
 * device.destroy();
 * ```
 */
export async function readRanges(
  device: GPUDevice,
  ranges: BufferRange[],
): Promise<Uint8Array<ArrayBuffer>[]> {
  let total = 0;
  const at = ranges.map((r) => {
    const o = total;
    total += Math.ceil(r.size / 4) * 4;
    return o;
  });
  // A copy the GPU refuses (a destroyed source, say) would leave zeros in
  // the staging buffer: catch it, so that no caller mistakes them for data.
  device.pushErrorScope("validation");
  const staging = device.createBuffer({
    label: "readback",
    size: Math.max(total, 4),
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const enc = device.createCommandEncoder();
  ranges.forEach((r, i) => {
    const size = Math.ceil(r.size / 4) * 4;
    if (size) enc.copyBufferToBuffer(r.buffer, r.offset, staging, at[i], size);
  });
  device.queue.submit([enc.finish()]);
  const refused = device.popErrorScope();
  try {
    const [error] = await Promise.all([
      refused,
      staging.mapAsync(GPUMapMode.READ),
    ]);
    if (error) {
      throw new GpuCommandError(`the GPU refused a readback: ${error.message}`);
    }
    const all = new Uint8Array(staging.getMappedRange());
    const out = ranges.map((r, i) => all.slice(at[i], at[i] + r.size));
    staging.unmap();
    return out;
  } finally {
    refused.catch(() => {});
    staging.destroy();
  }
}

/** Options of {@link packBuffers}. */
export interface PackOptions {
  /** Label of the buffers (numbered). */
  label: string;
  /** Usage of the buffers. */
  usage: number;
  /**
   * Every range starts at a multiple of this many bytes.
   * @default {the device's minStorageBufferOffsetAlignment}
   */
  align?: number;
  /**
   * Largest buffer to create.
   * @default {the device's maxBufferSize}
   */
  maxBytes?: number;
}

/**
 * Ranges of the given byte sizes (each rounded up to whole words, at least
 * one), packed in order into as few new buffers as `maxBytes` allows, each
 * buffer exactly as large as what it holds. Few large buffers waste less
 * device memory than one per range: on an NVIDIA H200 over Vulkan, Deno's
 * WebGPU held 541 buffers of 172 MiB in the memory of 541 × 256 MiB, and
 * buffers of 500 MiB or of 64 MiB at their size (bench/RESULTS.md, round 22).
 *
 * @example
 * ```ts
 * import { requestDevice } from "./device.ts";
 * import { packBuffers } from "./buffers.ts";
 * const device = await requestDevice();
 * const { buffers, ranges } = packBuffers(device, [12, 1000], {
 *   label: "state",
 *   usage: GPUBufferUsage.STORAGE,
 *   align: 256,
 * });
 * console.log(buffers.length, ranges.map((r) => r.offset)); // 1 [ 0, 256 ]
 * console.log(buffers[0].size); // 1256
 * device.destroy();
 * ```
 */
export function packBuffers(
  device: GPUDevice,
  sizes: readonly number[],
  options: PackOptions,
): { buffers: GPUBuffer[]; ranges: BufferRange[] } {
  const align = options.align ?? device.limits.minStorageBufferOffsetAlignment;
  const maxBytes = options.maxBytes ?? device.limits.maxBufferSize;
  const words = sizes.map((n) => Math.max(4, Math.ceil(n / 4) * 4));
  // Where each range goes: [buffer, offset], and each buffer's end.
  const place: [number, number][] = [];
  const ends: number[] = [];
  for (const size of words) {
    if (size > maxBytes) {
      throw new RangeError(
        `packBuffers: expected ranges of at most ${maxBytes} bytes (the largest buffer), got ${size}`,
      );
    }
    const last = ends.length - 1;
    const at = last < 0 ? 0 : Math.ceil(ends[last] / align) * align;
    if (last >= 0 && at + size <= maxBytes) {
      place.push([last, at]);
      ends[last] = at + size;
    } else {
      place.push([ends.length, 0]);
      ends.push(size);
    }
  }
  const buffers = ends.map((size, i) =>
    device.createBuffer({
      label: ends.length > 1 ? `${options.label} ${i}` : options.label,
      size,
      usage: options.usage,
    })
  );
  return {
    buffers,
    ranges: place.map(([b, offset], i) => ({
      buffer: buffers[b],
      offset,
      size: words[i],
    })),
  };
}

/**
 * A bind group of `layout` whose binding i is `resources[i]`: a whole buffer
 * or a range of one. Every bind group of this library's kernels has this
 * shape (bindings 0, 1, … in order).
 *
 * @example
 * ```ts
 * import { requestDevice } from "./device.ts";
 * import { bindBuffers, readBuffer } from "./buffers.ts";
 * const device = await requestDevice();
 * const code = "@group(0) @binding(0) var<storage, read_write> x: array<u32>;\n" +
 *   "@compute @workgroup_size(1) fn main() { x[0] = 7u; }";
 * const pipe = device.createComputePipeline({
 *   layout: "auto",
 *   compute: { module: device.createShaderModule({ code }), entryPoint: "main" },
 * });
 * const x = device.createBuffer({ size: 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
 * const enc = device.createCommandEncoder();
 * const pass = enc.beginComputePass();
 * pass.setPipeline(pipe);
 * pass.setBindGroup(0, bindBuffers(device, pipe.getBindGroupLayout(0), [x]));
 * pass.dispatchWorkgroups(1);
 * pass.end();
 * device.queue.submit([enc.finish()]);
 * console.log(new Uint32Array(await readBuffer(device, x))[0]); // 7
 * device.destroy();
 * ```
 */
export function bindBuffers(
  device: GPUDevice,
  layout: GPUBindGroupLayout,
  resources: (GPUBuffer | GPUBufferBinding)[],
  label?: string,
): GPUBindGroup {
  return device.createBindGroup({
    label,
    layout,
    entries: resources.map((r, binding) => ({
      binding,
      resource: r instanceof GPUBuffer ? { buffer: r } : r,
    })),
  });
}

/**
 * Reads a whole buffer back (it needs COPY_SRC usage).
 *
 * @example
 * ```ts
 * import { requestDevice } from "./device.ts";
 * import { createFilled, readBuffer } from "./buffers.ts";
 * const device = await requestDevice();
 * const b = createFilled(device, new Float32Array([1.5]), GPUBufferUsage.COPY_SRC, "b");
 * console.log(new Float32Array(await readBuffer(device, b))[0]); // 1.5
 * device.destroy();
 * ```
 */
export async function readBuffer(
  device: GPUDevice,
  buffer: GPUBuffer,
): Promise<ArrayBuffer> {
  const [bytes] = await readRanges(device, [{
    buffer,
    offset: 0,
    size: buffer.size,
  }]);
  return bytes.buffer as ArrayBuffer;
}
