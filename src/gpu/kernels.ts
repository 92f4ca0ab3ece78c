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
import {
  constantsWgsl,
  FAST_LANES,
  FLAG_CONSTANTS,
  layoutWgsl,
} from "./layout.ts";
import { pruneWgsl } from "./wgsl_prune.ts";

// Structs and constants the kernels share with TypeScript, declared once in
// src/gpu/layout.ts and emitted as WGSL ahead of every kernel.
const SHARED = layoutWgsl();
// The non-finite flags' constants, for the prologue alone.
const FLAGS = constantsWgsl(FLAG_CONSTANTS);

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
  prologue: [numeric, grid, FLAGS, prologue],
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

/**
 * Every kernel of this library, by name.
 *
 * @example
 * ```ts
 * import { KERNEL_NAMES, kernelSource } from "./kernels.ts";
 * console.log(KERNEL_NAMES.every((n) => kernelSource(n).includes("fn main"))); // true
 * ```
 */
export const KERNEL_NAMES: readonly KernelName[] = Object.keys(
  SOURCES,
) as KernelName[];

/** How a kernel's source is assembled for a device. */
export interface KernelVariant {
  /**
   * Reductions with subgroup operations (kernels/workgroup_subgroups.wgsl)
   * instead of workgroup memory only; needs the `subgroups` feature.
   * @default {false}
   */
  subgroups?: boolean;
  /**
   * Binding pairs (lanes) of MicroAdam's one-pass kernels: 1, or
   * FAST_LANES where the device allows the bindings (see {@link fastLanes}).
   * @default {1}
   */
  lanes?: number;
}

/**
 * The lanes MicroAdam's one-pass kernels take on `device`: FAST_LANES
 * where its storage-buffer limit allows the select kernel's 8 bindings
 * plus two per further lane, else 1.
 *
 * @example
 * ```ts
 * import { requestDevice } from "./device.ts";
 * import { fastLanes } from "./kernels.ts";
 * const device = await requestDevice();
 * console.log([1, 4].includes(fastLanes(device))); // true
 * device.destroy();
 * ```
 */
export function fastLanes(device: GPUDevice): number {
  const needed = 8 + 2 * (FAST_LANES - 1);
  return device.limits.maxStorageBuffersPerShaderStage >= needed
    ? FAST_LANES
    : 1;
}

// How the one-pass kernels reach a lane's gradients (select) or parameters
// (update): lane 0 is the kernel's own binding, lanes 1.. are bindings after
// its last (8 in the select kernel, 6 in the update kernel), and a switch
// picks one (a block's lane is uniform). WGSL has no arrays of bindings, so
// this text is made per lane count.
function laneAccess(name: KernelName, lanes: number): string {
  const more = Array.from({ length: lanes - 1 }, (_, i) => i + 1);
  const pick = (
    fn: string,
    args: string,
    type: string,
    body: (suffix: string) => string,
  ) =>
    [
      `fn ${fn}(lane: u32${args})${type ? ` -> ${type}` : ""} {`,
      ...(more.length
        ? [
          "  switch lane {",
          ...more.map((l) => `    case ${l}u: { ${body(`_${l}`)} }`),
          `    default: { ${body("")} }`,
          "  }",
        ]
        : [`  ${body("")}`]),
      "}",
    ].join("\n");
  if (name === "microadamSelectFast") {
    return [
      ...more.flatMap((l) => [
        `@group(0) @binding(${
          7 + 2 * l
        }) var<storage, read> grads_${l}: array<u32>;`,
        `@group(0) @binding(${
          8 + 2 * l
        }) var<storage, read> grads4_${l}: array<vec4<u32>>;`,
      ]),
      pick("lane_grad", ", i: u32", "u32", (x) => `return grads${x}[i];`),
      // A thread's 16-byte loads in one call (the H200's compiler still
      // branches per load; a call per load was slower on llvmpipe).
      pick(
        "lane_grad4x2",
        ", i: u32",
        "array<vec4<u32>, 2>",
        (x) => `return array(grads4${x}[i], grads4${x}[i + 1u]);`,
      ),
      pick(
        "lane_grad4x4",
        ", i: u32",
        "array<vec4<u32>, 4>",
        (x) =>
          `return array(grads4${x}[i], grads4${x}[i + 1u], grads4${x}[i + 2u], grads4${x}[i + 3u]);`,
      ),
      pick(
        "lane_grad4_len",
        "",
        "u32",
        (x) => `return arrayLength(&grads4${x});`,
      ),
    ].join("\n");
  }
  if (name === "microadamUpdateFast") {
    return [
      ...more.map((l) =>
        `@group(0) @binding(${
          6 + l
        }) var<storage, read_write> params_${l}: array<u32>;`
      ),
      pick("lane_param", ", i: u32", "u32", (x) => `return params${x}[i];`),
      pick(
        "lane_param2",
        ", i: u32, j: u32",
        "vec2<u32>",
        (x) => `return vec2(params${x}[i], params${x}[j]);`,
      ),
      pick(
        "set_lane_param",
        ", i: u32, v: u32",
        "",
        (x) => `params${x}[i] = v;`,
      ),
    ].join("\n");
  }
  return "";
}

/**
 * The full WGSL source of a kernel: the shared snippets it needs and its own
 * file, without the functions and workgroup variables it never reaches
 * (`pruneWgsl`: NVIDIA's driver counts every workgroup variable of a module
 * in the kernel's workgroup memory, used or not).
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
  return pruneWgsl(
    [
      SHARED,
      ...SOURCES[name].map((s) =>
        s === workgroup && variant.subgroups ? workgroupSubgroups : s
      ),
      laneAccess(name, variant.lanes ?? 1),
    ].join("\n"),
  );
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
 * use subgroups where {@link hasSubgroups} says so; MicroAdam's one-pass
 * kernels take `lanes` binding pairs (see {@link KernelVariant.lanes}).
 * Compilation errors surface as the device's validation errors
 * (tests/gpu_kernels_test.ts compiles every kernel in an error scope).
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
  lanes = 1,
): GPUComputePipeline {
  if (NUMERIC.has(name) && constants.EXACT_FMA === undefined) {
    constants = { ...constants, EXACT_FMA: hasExactFma(device) ? 1 : 0 };
  }
  const subgroups = hasSubgroups(device);
  // The constants in name order, so that the key (and the pipeline's label,
  // which names them) does not depend on the order they were given in.
  const named = Object.entries(constants).sort(([a], [b]) => a < b ? -1 : 1)
    .map(([k, v]) => `${k}=${v}`).join(" ");
  const key = `${name}:${named}:${lanes}`;
  return cachedPipeline(device, key, () => {
    const module = device.createShaderModule({
      label: name,
      code: kernelSource(name, { subgroups, lanes }),
    });
    const entries = EXPLICIT_LAYOUTS[name];
    return device.createComputePipeline({
      label: named ? `${name} ${named}` : name,
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
