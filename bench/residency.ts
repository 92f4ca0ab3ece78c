/**
 * Two device diagnostics for the kernels' performance work, run by
 * `bench/device.ts --residency`:
 *
 * - **Residency**: how many workgroups of a compiled kernel the GPU keeps
 *   resident at once. WebGPU reports no register counts, so the kernel is
 *   compiled with a probe at the top of `main`: invocation 0 of every
 *   workgroup counts itself in, records the peak, spins on a global atomic
 *   for about a millisecond and counts itself out, while the rest of the
 *   workgroup waits at a barrier. The body of the kernel stays reachable (it
 *   runs on zeroed bindings, which make it return at once), so the compiler
 *   allocates its registers as usual. The peak over a dispatch of many more
 *   workgroups than fit is the number resident at once. The probe's build
 *   is not always the shipped one, though: on the H200 it reported 8
 *   workgroups per SM for a select_fast whose own build the driver compiled
 *   to 53 registers per thread (at most 4 such workgroups fit), so the
 *   driver's report (`bench/spirv.ts`, `bench/vkstats.py`) comes first.
 * - **Streaming**: a copy kernel with 1 to 16 `vec4` items per thread, with a
 *   bounds check per item or one per thread, to show what a streaming kernel
 *   needs to reach the copy bandwidth on this stack.
 *
 * @module
 */

import { bindBuffers, readBuffer } from "../src/gpu/buffers.ts";

/** The probe's workgroup counters: live now, peak, the spin word, a sink. */
const PROBE = `
@group(1) @binding(0) var<storage, read_write> probe_counts: array<atomic<u32>, 4>;
fn probe_enter() {
  let n = atomicAdd(&probe_counts[0], 1u) + 1u;
  atomicMax(&probe_counts[1], n);
  var x = 0u;
  for (var i = 0u; i < 2000u; i++) { x += atomicLoad(&probe_counts[2]); }
  atomicSub(&probe_counts[0], 1u);
  if (x == 0xdeadbeefu) { atomicStore(&probe_counts[3], x); }
}
`;

/**
 * `code` with the residency probe inserted at the top of `main`.
 *
 * @example
 * ```ts
 * import { withProbe } from "./residency.ts";
 * const code = "@compute @workgroup_size(64)\nfn main(@builtin(local_invocation_index) tid: u32) {}";
 * console.log(withProbe(code).includes("probe_enter()")); // true
 * ```
 */
export function withProbe(code: string): string {
  const start = code.indexOf("fn main(");
  const at = code.indexOf("{", start) + 1; // parameters hold no braces
  if (start < 0 || at === 0) {
    throw new Error("withProbe: no `fn main(...) {` in the kernel");
  }
  const tid = /@builtin\(local_invocation_index\)\s*(\w+)\s*:\s*u32/.exec(
    code.slice(start, at),
  );
  if (!tid) {
    throw new Error(
      "withProbe: main has no @builtin(local_invocation_index) parameter",
    );
  }
  const probe = `\n  if (${
    tid[1]
  } == 0u) { probe_enter(); }\n  workgroupBarrier();\n`;
  return code.slice(0, at) + probe + code.slice(at) + PROBE;
}

/**
 * The peak number of workgroups of `code` resident at once on `device`:
 * dispatches `groups` workgroups of the probed kernel on zeroed bindings.
 */
export async function residency(
  device: GPUDevice,
  code: string,
  constants: Record<string, number> = {},
  groups = 132 * 48,
): Promise<number> {
  const probed = withProbe(code);
  const pipe = device.createComputePipeline({
    layout: "auto",
    compute: {
      module: device.createShaderModule({ code: probed }),
      entryPoint: "main",
      constants,
    },
  });
  const buffers: GPUBuffer[] = [];
  const entries: GPUBindGroupEntry[] = [];
  const decl =
    /@group\(0\)\s*@binding\((\d+)\)\s*var<(uniform|storage)[^>]*>\s*\w+/g;
  for (const m of code.matchAll(decl)) {
    const uniform = m[2] === "uniform";
    const buffer = device.createBuffer({
      size: uniform ? 4096 : 1 << 20,
      usage: uniform ? GPUBufferUsage.UNIFORM : GPUBufferUsage.STORAGE,
    });
    buffers.push(buffer);
    entries.push({ binding: Number(m[1]), resource: { buffer } });
  }
  const counts = device.createBuffer({
    size: 16,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  buffers.push(counts);
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipe);
  pass.setBindGroup(
    0,
    device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries }),
  );
  pass.setBindGroup(
    1,
    bindBuffers(device, pipe.getBindGroupLayout(1), [counts]),
  );
  pass.dispatchWorkgroups(groups);
  pass.end();
  device.queue.submit([enc.finish()]);
  const peak = new Uint32Array(await readBuffer(device, counts))[1];
  for (const b of buffers) b.destroy();
  return peak;
}

/**
 * A copy kernel with `items` vec4 per thread, consecutive threads on
 * consecutive vec4s; `checkEach`: a bounds check per item (else one per
 * thread, for sizes the grid divides); `unrolled`: written out item by item
 * instead of a loop over a private array.
 *
 * @example
 * ```ts
 * import { copyKernel } from "./residency.ts";
 * console.log(copyKernel(4, false).includes("fn main")); // true
 * ```
 */
export function copyKernel(
  items: number,
  checkEach: boolean,
  unrolled = false,
): string {
  const ids = [...Array(items).keys()];
  const load = unrolled
    ? `if (base + 256u * ${items - 1}u >= n) { return; }
  ${ids.map((i) => `let v${i} = src[base + ${256 * i}u];`).join("\n  ")}
  ${ids.map((i) => `dst[base + ${256 * i}u] = v${i};`).join("\n  ")}`
    : checkEach
    ? `for (var i = 0u; i < ${items}u; i++) { if (base + 256u * i < n) { v[i] = src[base + 256u * i]; } }
  for (var i = 0u; i < ${items}u; i++) { if (base + 256u * i < n) { dst[base + 256u * i] = v[i]; } }`
    : `if (base + 256u * ${items - 1}u >= n) { return; }
  for (var i = 0u; i < ${items}u; i++) { v[i] = src[base + 256u * i]; }
  for (var i = 0u; i < ${items}u; i++) { dst[base + 256u * i] = v[i]; }`;
  return `
@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;
@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) tid: u32,
) {
  let base = (wid.x + wid.y * nwg.x) * ${256 * items}u + tid;
  let n = arrayLength(&src);
  var v: array<vec4<u32>, ${items}>;
  ${load}
}`;
}

/**
 * A kernel that holds `kb` KiB of workgroup memory and `live` values per
 * thread across a barrier (a loaded value each, all used after it), to map
 * what limits residency on a device.
 *
 * @example
 * ```ts
 * import { pressureKernel } from "./residency.ts";
 * console.log(pressureKernel(16, 8).includes("array<u32, 4096>")); // true
 * ```
 */
export function pressureKernel(kb: number, live: number): string {
  const words = Math.max(1, kb * 256);
  const ids = [...Array(live).keys()];
  return `
@group(0) @binding(0) var<storage, read_write> buf: array<u32>;
var<workgroup> shared_words: array<u32, ${words}>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let n = arrayLength(&buf);
  let base = (wid.x * 256u + tid) % n;
  ${ids.map((i) => `let v${i} = buf[(base + ${i * 4099}u) % n];`).join("\n  ")}
  shared_words[(tid * 17u) % ${words}u] = base;
  // Storage loads may not move past a storage barrier: all stay live.
  storageBarrier();
  workgroupBarrier();
  var x = shared_words[(tid * 13u) % ${words}u];
  ${ids.map((i) => `x = x * v${i} + ${i + 1}u;`).join("\n  ")}
  if (x == 0x12345u) { buf[base] = x; }
}`;
}
