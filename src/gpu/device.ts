/**
 * Getting a WebGPU device with the limits this library needs, and clear
 * errors when there is none.
 *
 * @module
 */

import { GpuUnavailableError } from "../errors.ts";
import { probeExactFma, probeSubgroups } from "./capabilities.ts";

/** Options of {@link requestDevice}. */
export interface RequestDeviceOptions {
  /** Adapter preference. @default {"high-performance"} */
  powerPreference?: GPUPowerPreference;
  /** Extra limits to request on top of the adapter maxima used by default. @default {{}} */
  requiredLimits?: Record<string, number>;
  /**
   * Request the `subgroups` feature (some adapters grant it without listing
   * it) so that the MicroAdam kernels reduce with subgroup operations; they
   * have a path without. @default {true}
   */
  subgroups?: boolean;
}

/** Limits raised to the adapter's maximum: the WebGPU defaults are small. */
const RAISED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupsPerDimension",
] as const;

const HOW_TO_GET_ONE =
  "Deno exposes WebGPU through Vulkan (Linux), Metal (macOS) or DirectX 12 (Windows). " +
  "On Linux without a GPU, install Mesa's software Vulkan driver (Debian/Ubuntu: " +
  "`apt-get install mesa-vulkan-drivers`), or use the CPU optimizers (MicroAdamCpu, AdamCpu, …).";

/**
 * Requests a WebGPU device with the adapter's maximum storage-binding,
 * buffer and workgroup limits, `timestamp-query` when available and
 * `subgroups` when granted, and probes whether its `fma()` is exact (see
 * {@link probeExactFma}) and its subgroups usable ({@link probeSubgroups}).
 * Throws {@link GpuUnavailableError} saying how to get an adapter when none exists.
 *
 * @example
 * ```ts
 * import { requestDevice } from "./device.ts";
 * const device = await requestDevice();
 * console.log(device.limits.maxStorageBufferBindingSize >= 128 * 2 ** 20); // true
 * device.destroy();
 * ```
 */
export async function requestDevice(
  options: RequestDeviceOptions = {},
): Promise<GPUDevice> {
  const gpu = (globalThis.navigator as { gpu?: GPU } | undefined)?.gpu;
  if (!gpu) {
    throw new GpuUnavailableError(
      `WebGPU is not available in this runtime (navigator.gpu is undefined). ${HOW_TO_GET_ONE}`,
    );
  }
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({
      powerPreference: options.powerPreference ?? "high-performance",
    });
  } catch (e) {
    throw new GpuUnavailableError(
      `requesting a WebGPU adapter failed: ${
        (e as Error).message
      }. ${HOW_TO_GET_ONE}`,
    );
  }
  if (!adapter) {
    throw new GpuUnavailableError(`no WebGPU adapter found. ${HOW_TO_GET_ONE}`);
  }
  const requiredLimits: Record<string, number> = {};
  const available = adapter.limits as unknown as Record<string, number>;
  for (const name of RAISED_LIMITS) {
    if (typeof available[name] === "number") {
      requiredLimits[name] = available[name];
    }
  }
  Object.assign(requiredLimits, options.requiredLimits ?? {});
  const requiredFeatures: GPUFeatureName[] = [];
  if (adapter.features.has("timestamp-query")) {
    requiredFeatures.push("timestamp-query");
  }
  let device: GPUDevice | undefined;
  if (options.subgroups ?? true) {
    try {
      device = await adapter.requestDevice({
        requiredLimits,
        requiredFeatures: [
          ...requiredFeatures,
          "subgroups" as GPUFeatureName,
        ],
      });
    } catch {
      // Not granted: the kernels' path without subgroups.
    }
  }
  try {
    device ??= await adapter.requestDevice({
      requiredLimits,
      requiredFeatures,
    });
  } catch (e) {
    throw new GpuUnavailableError(
      `the WebGPU adapter refused a device: ${(e as Error).message}`,
    );
  }
  // The probes only unlock faster paths; without them the exact integer
  // arithmetic and the workgroup-memory reductions are used.
  try {
    await probeExactFma(device);
  } catch { /* integer path */ }
  try {
    await probeSubgroups(device);
  } catch { /* no subgroups */ }
  return device;
}

const lostReasons = new WeakMap<GPUDevice, { reason?: string }>();

/**
 * Why `device` was lost (destroyed, or a driver failure), or undefined while
 * it lives. One watcher per device: optimizers ask here instead of each
 * holding a `device.lost` handler, which would keep every optimizer ever
 * built on the device from being garbage-collected.
 *
 * @example
 * ```ts
 * import { deviceLostReason, requestDevice } from "./device.ts";
 * const device = await requestDevice();
 * console.log(deviceLostReason(device)); // undefined
 * device.destroy();
 * await device.lost;
 * console.log(deviceLostReason(device)); // "device was lost"
 * ```
 */
export function deviceLostReason(device: GPUDevice): string | undefined {
  let record = lostReasons.get(device);
  if (!record) {
    const r: { reason?: string } = {};
    lostReasons.set(device, record = r);
    device.lost.then((info) => {
      r.reason = info.message || String(info.reason);
    });
  }
  return record.reason;
}
