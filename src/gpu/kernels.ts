/**
 * WGSL sources assembled into compute pipelines, cached per device. WGSL has
 * no includes, so each kernel is the concatenation of the shared snippets it
 * needs and its own file.
 *
 * @module
 */

import numeric from "../../kernels/numeric.wgsl" with { type: "text" };
import { hasExactFma, hasSubgroups } from "./capabilities.ts";
import grid from "../../kernels/grid.wgsl" with { type: "text" };
import segments from "../../kernels/segments.wgsl" with { type: "text" };
import efQuant from "../../kernels/ef_quant.wgsl" with { type: "text" };
import microCommon from "../../kernels/microadam_common.wgsl" with {
  type: "text",
};
import microBlock from "../../kernels/microadam_block.wgsl" with {
  type: "text",
};
import checkFinite from "../../kernels/check_finite.wgsl" with {
  type: "text",
};
import prologue from "../../kernels/prologue.wgsl" with { type: "text" };
import adam from "../../kernels/adam.wgsl" with { type: "text" };
import select from "../../kernels/microadam_select.wgsl" with { type: "text" };
import update from "../../kernels/microadam_update.wgsl" with { type: "text" };
import selectFast from "../../kernels/microadam_select_fast.wgsl" with {
  type: "text",
};
import updateFast from "../../kernels/microadam_update_fast.wgsl" with {
  type: "text",
};
import workgroup from "../../kernels/workgroup.wgsl" with { type: "text" };
import workgroupSubgroups from "../../kernels/workgroup_subgroups.wgsl" with {
  type: "text",
};
import commit from "../../kernels/microadam_commit.wgsl" with { type: "text" };
import elementwise from "../../kernels/elementwise.wgsl" with { type: "text" };
import { layoutWgsl } from "./layout.ts";

// Structs and constants the kernels share with TypeScript, declared once in
// src/gpu/layout.ts and emitted as WGSL ahead of every kernel.
const SHARED = layoutWgsl();

/** The compute kernels of this library. */
export type KernelName =
  | "checkFinite"
  | "checkFinite4"
  | "prologue"
  | "adam"
  | "adam4"
  | "microadamSelect"
  | "microadamUpdate"
  | "microadamSelectFast"
  | "microadamUpdateFast"
  | "microadamCommit";

// The elementwise kernels come in two widths: one f32 per access, or four
// (for batches whose segments start and end on 16-byte boundaries; see
// `vec4Aligned` in plan.ts).
const SCALAR = "const LANES: u32 = 1u;\nalias VF = f32;\nalias VU = u32;";
const VEC4 =
  "const LANES: u32 = 4u;\nalias VF = vec4<f32>;\nalias VU = vec4<u32>;";

const SOURCES: Record<KernelName, string[]> = {
  checkFinite: [SCALAR, grid, segments, checkFinite],
  checkFinite4: [VEC4, grid, segments, checkFinite],
  prologue: [numeric, grid, prologue],
  adam: [SCALAR, grid, segments, adam],
  adam4: [VEC4, grid, segments, adam],
  microadamSelect: [
    numeric,
    grid,
    segments,
    efQuant,
    microCommon,
    microBlock,
    select,
  ],
  microadamUpdate: [numeric, grid, segments, efQuant, microCommon, update],
  microadamSelectFast: [
    numeric,
    grid,
    segments,
    workgroup,
    efQuant,
    microCommon,
    microBlock,
    selectFast,
  ],
  microadamUpdateFast: [
    numeric,
    grid,
    segments,
    workgroup,
    microBlock,
    updateFast,
  ],
  microadamCommit: [numeric, grid, efQuant, commit, elementwise],
};

/** How a kernel's source is assembled for a device. */
export interface KernelVariant {
  /**
   * Reductions with subgroup operations (kernels/workgroup_subgroups.wgsl)
   * instead of workgroup memory only; needs the `subgroups` feature.
   * @default {false}
   */
  subgroups?: boolean;
}

/**
 * The full WGSL source of a kernel (shared snippets included).
 *
 * @example
 * ```ts
 * import { kernelSource } from "./kernels.ts";
 * console.log(kernelSource("adam").includes("fn main")); // true
 * console.log(kernelSource("microadamSelectFast", { subgroups: true }).includes("subgroupAdd")); // true
 * ```
 */
export function kernelSource(
  name: KernelName,
  variant: KernelVariant = {},
): string {
  return [
    SHARED,
    ...SOURCES[name].map((s) =>
      s === workgroup && variant.subgroups ? workgroupSubgroups : s
    ),
  ].join("\n");
}

// Kernels built on kernels/numeric.wgsl take its EXACT_FMA switch.
const NUMERIC = new Set<KernelName>([
  "prologue",
  "microadamSelect",
  "microadamUpdate",
  "microadamSelectFast",
  "microadamUpdateFast",
  "microadamCommit",
]);

const cache = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

/**
 * The pipeline cached for `device` under `key`, made by `make` on first use.
 * The one pipeline cache of the project: the optimizers' kernels and the
 * model kernels (src/nn) both compile through it, so a pipeline is compiled
 * once per device and dropped with the device.
 *
 * @example
 * ```ts
 * import { requestDevice } from "./device.ts";
 * import { cachedPipeline } from "./kernels.ts";
 * const device = await requestDevice();
 * let made = 0;
 * const make = () => {
 *   made++;
 *   const code = "@compute @workgroup_size(1) fn main() {}";
 *   const module = device.createShaderModule({ code });
 *   return device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
 * };
 * const p = cachedPipeline(device, "empty", make);
 * console.log(p === cachedPipeline(device, "empty", make), made); // true 1
 * device.destroy();
 * ```
 */
export function cachedPipeline(
  device: GPUDevice,
  key: string,
  make: () => GPUComputePipeline,
): GPUComputePipeline {
  let perDevice = cache.get(device);
  if (!perDevice) cache.set(device, perDevice = new Map());
  let p = perDevice.get(key);
  if (!p) perDevice.set(key, p = make());
  return p;
}

// Kernels whose bind group has a binding with a dynamic offset (chosen at
// encode time), which an "auto" layout cannot express.
const COMPUTE = 4; // GPUShaderStage.COMPUTE
const EXPLICIT_LAYOUTS: Partial<Record<KernelName, GPUBindGroupLayoutEntry[]>> =
  {
    prologue: [
      { binding: 0, visibility: COMPUTE, buffer: { type: "uniform" } },
      { binding: 1, visibility: COMPUTE, buffer: { type: "storage" } },
      { binding: 2, visibility: COMPUTE, buffer: { type: "storage" } },
      {
        binding: 3,
        visibility: COMPUTE,
        buffer: { type: "read-only-storage", hasDynamicOffset: true },
      },
      {
        binding: 4,
        visibility: COMPUTE,
        buffer: { type: "read-only-storage", hasDynamicOffset: true },
      },
    ],
  };

/**
 * A compute pipeline for `name` with the given override constants, compiled
 * once per device. Kernels using the exact numerics get `EXACT_FMA` from
 * {@link hasExactFma} unless `constants` sets it; the workgroup reductions
 * use subgroups where {@link hasSubgroups} says so. Compilation errors surface as the device's validation
 * errors (tests/gpu_kernels_test.ts compiles every kernel in an error scope).
 *
 * @example
 * ```ts
 * import { requestDevice } from "./device.ts";
 * import { pipeline } from "./kernels.ts";
 * const device = await requestDevice();
 * const p = pipeline(device, "adam");
 * console.log(p === pipeline(device, "adam")); // true
 * device.destroy();
 * ```
 */
export function pipeline(
  device: GPUDevice,
  name: KernelName,
  constants: Record<string, number> = {},
): GPUComputePipeline {
  if (NUMERIC.has(name) && constants.EXACT_FMA === undefined) {
    constants = { ...constants, EXACT_FMA: hasExactFma(device) ? 1 : 0 };
  }
  const subgroups = hasSubgroups(device);
  return cachedPipeline(device, `${name}:${JSON.stringify(constants)}`, () => {
    const module = device.createShaderModule({
      label: name,
      code: kernelSource(name, { subgroups }),
    });
    const entries = EXPLICIT_LAYOUTS[name];
    return device.createComputePipeline({
      label: name,
      layout: entries
        ? device.createPipelineLayout({
          label: name,
          bindGroupLayouts: [
            device.createBindGroupLayout({ label: name, entries }),
          ],
        })
        : "auto",
      compute: { module, entryPoint: "main", constants },
    });
  });
}

/**
 * Splits a workgroup count into (x, y) under the per-dimension limit; the
 * kernels fold them back with `linear_workgroup`.
 *
 * @example
 * ```ts
 * import { dispatchSize } from "./kernels.ts";
 * console.log(dispatchSize(100000, 65535)); // [50000, 2]
 * ```
 */
export function dispatchSize(
  count: number,
  maxPerDim: number,
): [number, number] {
  if (count <= maxPerDim) return [Math.max(count, 1), 1];
  const y = Math.ceil(count / maxPerDim);
  return [Math.ceil(count / y), y];
}
