/**
 * What a device's shader arithmetic can be trusted with. MicroAdam's top-k
 * selection must round exactly like the CPU reference; WGSL promises neither
 * a fused `fma()` nor a correctly rounded `/`, so the kernels carry an exact
 * integer implementation and switch to the hardware fma only where a probe
 * has shown it to be a true fused multiply-add.
 *
 * @module
 */

import numeric from "../../kernels/numeric.wgsl" with { type: "text" };
import { fmaF32 } from "../numeric/f32.ts";
import { bindBuffers } from "./buffers.ts";

const exactFma = new WeakMap<GPUDevice, boolean>();

/**
 * Whether {@link probeExactFma} found this device's `fma()` correctly
 * rounded (false when never probed: the integer path is always exact).
 *
 * @example
 * ```ts
 * import { hasExactFma } from "./capabilities.ts";
 * import { requestDevice } from "./device.ts";
 * const device = await requestDevice(); // probes
 * console.log(typeof hasExactFma(device)); // "boolean"
 * device.destroy();
 * ```
 */
export function hasExactFma(device: GPUDevice): boolean {
  return exactFma.get(device) ?? false;
}

// Deterministic test vectors: products of an f32 and a short (bf16 or 4-bit)
// operand added to a near-cancelling or random addend, and divisions from
// first guesses up to 2 ulps off.
function vectors(): {
  input: Float32Array<ArrayBuffer>;
  guess: Float32Array<ArrayBuffer>;
  expected: Float32Array<ArrayBuffer>;
} {
  const n = 4096;
  const input = new Float32Array(n * 4);
  const guess = new Float32Array(n * 2);
  const expected = new Float32Array(n * 2);
  let s = 0x9e3779b9;
  const rand = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < n; i++) {
    const x = Math.fround((rand() - 0.5) * 4);
    f[0] = Math.fround((rand() - 0.5) * 4);
    u[0] &= 0xffff0000;
    const y = i % 2 ? f[0] : Math.floor(rand() * 16);
    const z = i % 3
      ? Math.fround(-x * y * (1 + (rand() - 0.5) * 1e-5))
      : Math.fround(rand() - 0.5);
    const a = Math.fround((rand() - 0.5) * 8);
    const b = Math.fround(rand() * 20 + 0.01);
    f[0] = a / b;
    u[0] += (i % 5) - 2;
    input.set([x, y, z, a], 4 * i);
    guess.set([b, f[0]], 2 * i);
    expected[2 * i] = fmaF32(x, y, z);
    expected[2 * i + 1] = Math.fround(a / b);
  }
  return { input, guess, expected };
}

/**
 * Runs the fast (hardware-fma) paths of `fma_short` and `div_rn` on test
 * vectors with known exact answers, and records whether every result was
 * exact. {@link requestDevice} calls it; call it yourself for a device you
 * created, to let the kernels use the faster path.
 *
 * @example
 * ```ts
 * import { probeExactFma } from "./capabilities.ts";
 * const adapter = await navigator.gpu.requestAdapter();
 * const device = await adapter!.requestDevice();
 * console.log(typeof await probeExactFma(device)); // "boolean"
 * device.destroy();
 * ```
 */
export async function probeExactFma(device: GPUDevice): Promise<boolean> {
  const { input, guess, expected } = vectors();
  const n = expected.length / 2;
  const code = numeric + `
@group(0) @binding(0) var<storage, read> inp: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> div_in: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> outp: array<vec2<f32>>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let i = id.x;
  if (i >= arrayLength(&inp)) { return; }
  let v = inp[i];
  let d = div_in[i];
  outp[i] = vec2<f32>(fma_short(v.x, v.y, v.z), div_rn_from(v.w, d.x, d.y));
}`;
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
  const a = device.createBuffer({ size: input.byteLength, usage });
  const b = device.createBuffer({ size: guess.byteLength, usage });
  const out = device.createBuffer({
    size: expected.byteLength,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  const read = device.createBuffer({
    size: expected.byteLength,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  try {
    device.queue.writeBuffer(a, 0, input);
    device.queue.writeBuffer(b, 0, guess);
    device.pushErrorScope("validation");
    const pipe = device.createComputePipeline({
      layout: "auto",
      compute: {
        module: device.createShaderModule({ code, label: "fma probe" }),
        entryPoint: "main",
        constants: { EXACT_FMA: 1 },
      },
    });
    const bind = bindBuffers(device, pipe.getBindGroupLayout(0), [a, b, out]);
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipe);
    pass.setBindGroup(0, bind);
    pass.dispatchWorkgroups(Math.ceil(n / 64));
    pass.end();
    enc.copyBufferToBuffer(out, 0, read, 0, expected.byteLength);
    device.queue.submit([enc.finish()]);
    const error = await device.popErrorScope();
    await read.mapAsync(GPUMapMode.READ);
    const got = new Uint32Array(read.getMappedRange().slice(0));
    const want = new Uint32Array(expected.buffer);
    const exact = error === null && got.every((x, i) => x === want[i]);
    exactFma.set(device, exact);
    return exact;
  } finally {
    for (const x of [a, b, out, read]) x.destroy();
  }
}

const subgroups = new WeakMap<GPUDevice, boolean>();

/**
 * Whether {@link probeSubgroups} found this device's subgroups usable by
 * the kernels (false when never probed: the kernels then reduce in
 * workgroup memory only).
 *
 * @example
 * ```ts
 * import { hasSubgroups } from "./capabilities.ts";
 * import { requestDevice } from "./device.ts";
 * const device = await requestDevice(); // probes
 * console.log(typeof hasSubgroups(device)); // "boolean"
 * device.destroy();
 * ```
 */
export function hasSubgroups(device: GPUDevice): boolean {
  return subgroups.get(device) ?? false;
}

/**
 * Checks that the device has the `subgroups` feature and that, in a
 * 256-invocation workgroup, subgroups are runs of consecutive
 * `local_invocation_index` in lane order (what the kernels' scans assume;
 * every known Vulkan driver does it, WGSL does not promise it), and records
 * the answer for {@link hasSubgroups}. {@link requestDevice} calls it.
 *
 * @example
 * ```ts
 * import { probeSubgroups } from "./capabilities.ts";
 * const adapter = await navigator.gpu.requestAdapter();
 * const device = await adapter!.requestDevice();
 * console.log(await probeSubgroups(device)); // false: no `subgroups` feature requested
 * device.destroy();
 * ```
 */
export async function probeSubgroups(device: GPUDevice): Promise<boolean> {
  subgroups.set(device, false);
  if (!device.features.has("subgroups" as GPUFeatureName)) return false;
  const code = `
@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(256)
fn main(
  @builtin(local_invocation_index) tid: u32,
  @builtin(subgroup_size) size: u32,
  @builtin(subgroup_invocation_id) lane: u32,
) {
  let first = subgroupBroadcastFirst(tid);
  let ok = first + lane == tid && first % size == 0u && subgroupAdd(1u) == size &&
    subgroupInclusiveAdd(1u) == lane + 1u;
  out[tid] = select(0u, 1u, ok);
}`;
  const out = device.createBuffer({
    size: 1024,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  const read = device.createBuffer({
    size: 1024,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  try {
    device.pushErrorScope("validation");
    const pipe = device.createComputePipeline({
      layout: "auto",
      compute: {
        module: device.createShaderModule({ code, label: "subgroup probe" }),
        entryPoint: "main",
      },
    });
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipe);
    pass.setBindGroup(
      0,
      bindBuffers(device, pipe.getBindGroupLayout(0), [out]),
    );
    pass.dispatchWorkgroups(1);
    pass.end();
    enc.copyBufferToBuffer(out, 0, read, 0, 1024);
    device.queue.submit([enc.finish()]);
    const error = await device.popErrorScope();
    await read.mapAsync(GPUMapMode.READ);
    const ok = error === null &&
      new Uint32Array(read.getMappedRange()).every((x) => x === 1);
    read.unmap();
    subgroups.set(device, ok);
    return ok;
  } finally {
    out.destroy();
    read.destroy();
  }
}
