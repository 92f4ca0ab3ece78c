/**
 * Helpers shared by the GPU tests: one device per test file, buffers from
 * typed arrays, readbacks, and bf16 ulp distances.
 */

import { requestDevice } from "../src/gpu/device.ts";
import { readBuffer } from "../src/gpu/buffers.ts";

let shared: Promise<GPUDevice> | undefined;

/** The test process's device (fails the test when there is no adapter: nothing is skipped). */
export function testDevice(): Promise<GPUDevice> {
  return shared ??= requestDevice();
}

/** Usage of a tensor buffer in tests: storage plus both copy directions. */
export const TENSOR_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
  GPUBufferUsage.COPY_DST;

/** A buffer holding `data` (size rounded up to 4 bytes). */
export function bufferFrom(
  device: GPUDevice,
  data: Float32Array | Uint16Array,
  usage = TENSOR_USAGE,
): GPUBuffer {
  const size = Math.max(4, Math.ceil(data.byteLength / 4) * 4);
  const b = device.createBuffer({ size, usage });
  writeTo(device, b, data);
  return b;
}

/** Writes `data` at element `offset` (bf16 data padded to 4 bytes). */
export function writeTo(
  device: GPUDevice,
  buffer: GPUBuffer,
  data: Float32Array | Uint16Array,
  offset = 0,
): void {
  const bytes = Math.ceil(data.byteLength / 4) * 4;
  const padded = new Uint8Array(bytes);
  padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  device.queue.writeBuffer(buffer, offset * data.BYTES_PER_ELEMENT, padded);
}

/** Reads `length` f32 values at element `offset`. */
export async function readF32(
  device: GPUDevice,
  buffer: GPUBuffer,
  length: number,
  offset = 0,
): Promise<Float32Array> {
  return new Float32Array(await readBuffer(device, buffer), 4 * offset, length);
}

/** Reads `length` bf16 values (bits) at element `offset`. */
export async function readBf16(
  device: GPUDevice,
  buffer: GPUBuffer,
  length: number,
  offset = 0,
): Promise<Uint16Array> {
  return new Uint16Array(await readBuffer(device, buffer), 2 * offset, length);
}

/** Distance in bf16 ulps between two bf16 bit patterns. */
export function bf16UlpDistance(a: number, b: number): number {
  const ord = (x: number) => (x & 0x8000 ? -(x & 0x7fff) : x);
  return Math.abs(ord(a) - ord(b));
}

/** Seeded PRNG (mulberry32), so a failing random test can be replayed. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
