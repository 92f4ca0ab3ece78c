/**
 * Helpers shared by the GPU tests: one device per test file, buffers from
 * typed arrays, readbacks, and bf16 ulp distances.
 */

import { requestDevice } from "../src/gpu/device.ts";
import { bindBuffers, readBuffer } from "../src/gpu/buffers.ts";
import { rng } from "./rng.ts";

export { rng };

let shared: Promise<GPUDevice> | undefined;

/** The test process's device (fails the test when there is no adapter: nothing is skipped). */
export function testDevice(): Promise<GPUDevice> {
  if (!shared) {
    shared = requestDevice();
    if (Deno.env.get("TEARDOWN")) {
      globalThis.addEventListener("unload", () => {
        shared?.then((d) => d.destroy());
      });
    }
  }
  return shared;
}

/** Usage of a tensor buffer in tests: storage plus both copy directions. */
export const TENSOR_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
  GPUBufferUsage.COPY_DST;

/**
 * Runs `pipeline` once: bind group 0 gets `buffers[i]` at binding i, then
 * one dispatch of `x` × `y` workgroups in a pass of its own, submitted.
 */
export function dispatchWith(
  device: GPUDevice,
  pipeline: GPUComputePipeline,
  buffers: GPUBuffer[],
  x: number,
  y = 1,
): void {
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(
    0,
    bindBuffers(device, pipeline.getBindGroupLayout(0), buffers),
  );
  pass.dispatchWorkgroups(x, y);
  pass.end();
  device.queue.submit([enc.finish()]);
}

/** A buffer holding `data` (size rounded up to 4 bytes). */
export function bufferFrom(
  device: GPUDevice,
  data: Float32Array | Uint16Array | Uint32Array,
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
  data: Float32Array | Uint16Array | Uint32Array,
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

/**
 * Whether the device's f32 `/` and `sqrt` are IEEE-exact and it fuses no
 * `a · b + c` into one rounding, so that the Adam family's kernels agree
 * with their CPU references bit for bit: llvmpipe, CI's device. The H200
 * under Vulkan does neither (bench/RESULTS.md, rounds 16 and 17).
 */
export function hasIeeeArithmetic(device: GPUDevice): boolean {
  return device.adapterInfo.description.includes("llvmpipe");
}

/**
 * The seed of a randomized test: `MICROADAM_SEED` when set (to replay a
 * failure), otherwise fresh from the clock. Printed either way.
 */
export function testSeed(label: string): number {
  let fromEnv: string | undefined;
  try {
    fromEnv = Deno.env.get("MICROADAM_SEED");
  } catch {
    fromEnv = undefined; // no env permission: fresh seed
  }
  const seed = fromEnv !== undefined && fromEnv !== ""
    ? Number(fromEnv) >>> 0
    : Date.now() >>> 0;
  console.log(`${label}: seed ${seed} (replay with MICROADAM_SEED=${seed})`);
  return seed;
}

/** `n` values uniform in [-scale, scale), with a few 10x outliers. */
export function randomF32(
  r: () => number,
  n: number,
  scale = 1,
): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const x = (2 * r() - 1) * scale;
    out[i] = r() < 0.01 ? 10 * x : x;
  }
  return out;
}

/** Like {@link randomF32}, as bf16 bits (nearest-even). */
export function randomBf16(
  r: () => number,
  n: number,
  scale = 1,
): Uint16Array {
  const f = randomF32(r, n, scale);
  const out = new Uint16Array(n);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < n; i++) {
    const b = u[i];
    out[i] = ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

/** How far f32 results are from a reference. */
export interface F32Comparison {
  /** ‖got − want‖ / ‖want‖ (0 when both are zero). */
  rel: number;
  /** Largest |got − want| / |want| over coordinates with want ≠ 0. */
  maxElemRel: number;
  /** Coordinate of that largest elementwise error. */
  worst: number;
  /** Fraction of coordinates that are bit-identical. */
  exact: number;
  /** Non-finite results. */
  nonFinite: number;
}

/** Compares f32 arrays (see {@link F32Comparison}). */
export function compareF32(
  got: Float32Array,
  want: Float32Array,
): F32Comparison {
  if (got.length !== want.length) {
    throw new Error(`length ${got.length} vs ${want.length}`);
  }
  let num = 0;
  let den = 0;
  let maxElemRel = 0;
  let worst = -1;
  let exact = 0;
  let nonFinite = 0;
  const gu = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const wu = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < got.length; i++) {
    if (gu[i] === wu[i]) exact++;
    if (!Number.isFinite(got[i])) nonFinite++;
    const d = got[i] - want[i];
    num += d * d;
    den += want[i] * want[i];
    if (want[i] !== 0) {
      const e = Math.abs(d) / Math.abs(want[i]);
      if (e > maxElemRel || Number.isNaN(e)) {
        maxElemRel = Number.isNaN(e) ? Infinity : e;
        worst = i;
      }
    } else if (got[i] !== 0 && maxElemRel < Infinity) {
      maxElemRel = Infinity;
      worst = i;
    }
  }
  const rel = den === 0 ? (num === 0 ? 0 : Infinity) : Math.sqrt(num / den);
  return {
    rel: Number.isNaN(rel) ? Infinity : rel,
    maxElemRel,
    worst,
    exact: got.length ? exact / got.length : 1,
    nonFinite,
  };
}

/** How far bf16 results are from a reference, in ulps. */
export interface Bf16Comparison {
  /** Coordinates compared. */
  n: number;
  /** Fraction bit-identical. */
  exact: number;
  /** Fraction within 1 ulp. */
  withinOne: number;
  /** Largest distance in ulps. */
  worstUlps: number;
  /** Coordinate of the largest distance (-1 when all are exact). */
  worst: number;
}

/** Compares bf16 bit arrays (see {@link Bf16Comparison}). */
export function compareBf16(
  got: Uint16Array,
  want: Uint16Array,
): Bf16Comparison {
  if (got.length !== want.length) {
    throw new Error(`length ${got.length} vs ${want.length}`);
  }
  let exact = 0;
  let one = 0;
  let worstUlps = 0;
  let worst = -1;
  for (let i = 0; i < got.length; i++) {
    const d = got[i] === want[i] ? 0 : bf16UlpDistance(got[i], want[i]);
    if (d === 0) exact++;
    if (d <= 1) one++;
    if (d > worstUlps) {
      worstUlps = d;
      worst = i;
    }
  }
  const n = got.length;
  return {
    n,
    exact: n ? exact / n : 1,
    withinOne: n ? one / n : 1,
    worstUlps,
    worst,
  };
}

/** A state dict's counters and buffers, as compared across optimizers. */
export interface ComparableState {
  /** Applied steps. */
  step: number;
  /** Ring position. */
  ring: number;
  /** Skipped steps. */
  skipped: number;
  /** step() calls. */
  calls: number;
  /** Per tensor. */
  tensors: {
    name: string;
    length: number;
    buffers: Record<string, Uint8Array>;
  }[];
}

/**
 * The first difference between two optimizer states (counters, tensor
 * names and lengths, then every buffer byte), or undefined when they are
 * byte-identical. Buffer differences name the tensor, the buffer, the first
 * differing u32 word and how many words differ.
 */
export function stateDifference(
  a: ComparableState,
  b: ComparableState,
  { counters = true }: { counters?: boolean } = {},
): string | undefined {
  if (counters) {
    for (const k of ["step", "ring", "skipped", "calls"] as const) {
      if (a[k] !== b[k]) return `${k}: ${a[k]} vs ${b[k]}`;
    }
  }
  if (a.tensors.length !== b.tensors.length) {
    return `tensor count ${a.tensors.length} vs ${b.tensors.length}`;
  }
  for (let i = 0; i < a.tensors.length; i++) {
    const ta = a.tensors[i];
    const tb = b.tensors[i];
    if (ta.length !== tb.length) {
      return `tensor ${i} ("${ta.name}") length ${ta.length} vs ${tb.length}`;
    }
    const keys = Object.keys(ta.buffers).sort();
    const keysB = Object.keys(tb.buffers).sort();
    if (keys.join() !== keysB.join()) {
      return `tensor ${i} ("${ta.name}") buffers ${keys} vs ${keysB}`;
    }
    for (const k of keys) {
      const x = ta.buffers[k];
      const y = tb.buffers[k];
      if (x.length !== y.length) {
        return `tensor ${i} ("${ta.name}") ${k}: ${x.length} vs ${y.length} bytes`;
      }
      let first = -1;
      let count = 0;
      for (let j = 0; j < x.length; j += 4) {
        let same = true;
        for (let q = j; q < Math.min(j + 4, x.length); q++) {
          if (x[q] !== y[q]) same = false;
        }
        if (!same) {
          if (first < 0) first = j;
          count++;
        }
      }
      if (first >= 0) {
        const word = (u: Uint8Array) =>
          "0x" +
          Array.from(u.subarray(first, first + 4)).reverse().map((v) =>
            v.toString(16).padStart(2, "0")
          ).join("");
        return `tensor ${i} ("${ta.name}") ${k}: ${count} of ${
          Math.ceil(x.length / 4)
        } u32 words differ, first at word ${first / 4}: ${word(x)} vs ${
          word(y)
        }`;
      }
    }
  }
  return undefined;
}

/**
 * Asserts two typed arrays hold the same bytes; the message names the first
 * differing byte and how many differ (cheap, unlike a deep-equal diff).
 */
export function assertSameBytes(
  got: ArrayBufferView,
  want: ArrayBufferView,
  label: string,
): void {
  const a = new Uint8Array(got.buffer, got.byteOffset, got.byteLength);
  const b = new Uint8Array(want.buffer, want.byteOffset, want.byteLength);
  if (a.length !== b.length) {
    throw new Error(`${label}: ${a.length} bytes vs ${b.length}`);
  }
  let first = -1;
  let count = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      if (first < 0) first = i;
      count++;
    }
  }
  if (first >= 0) {
    throw new Error(
      `${label}: ${count} of ${a.length} bytes differ, first at byte ${first} (${
        a[first]
      } vs ${b[first]})`,
    );
  }
}
