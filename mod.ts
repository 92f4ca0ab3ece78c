/**
 * microadam: MicroAdam (Modoranu et al., NeurIPS 2024), a memory-efficient
 * Adam, for Deno on WebGPU — with Adam, AdamW and AMSGrad as baselines and an
 * exact CPU reference of each.
 *
 * MicroAdam keeps about 0.9 byte of optimizer state per parameter (a window
 * of the last 10 top-1 % gradients and a 4-bit error feedback) instead of
 * Adam's 8. Parameters and gradients stay in your GPU buffers; `step()`
 * encodes one compute pass and never reads back.
 *
 * @example
 * ```ts
 * import { MicroAdam, requestDevice } from "./mod.ts";
 *
 * const device = await requestDevice();
 * const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
 * const n = 4096;
 * const param = device.createBuffer({ size: 4 * n, usage });
 * const grad = device.createBuffer({ size: 4 * n, usage });
 *
 * const opt = new MicroAdam(device, [{ name: "w", param, grad, length: n }], { lr: 1e-3 });
 * for (let i = 0; i < 3; i++) {
 *   // ... your kernels write the gradient into `grad` ...
 *   device.queue.writeBuffer(grad, 0, new Float32Array(n).map(() => Math.random() - 0.5));
 *   opt.step();
 * }
 * const { step, skipped } = await opt.status();
 * console.log(step, skipped, opt.stateBytes() / n < 1); // 3 0 true
 * opt.dispose();
 * device.destroy();
 * ```
 *
 * @module
 */

export { requestDevice, type RequestDeviceOptions } from "./src/gpu/device.ts";
export { hasExactFma, probeExactFma } from "./src/gpu/capabilities.ts";
export type { GpuTensor, PlacedTensor } from "./src/gpu/tensors.ts";
export type { BufferRange } from "./src/gpu/buffers.ts";
export type { KernelName } from "./src/gpu/kernels.ts";
export type {
  Binding,
  DispatchGroup,
  GatherCopy,
  Plan,
  PlanOptions,
  Segment,
} from "./src/gpu/plan.ts";
export type { SegmentFields } from "./src/gpu/segments.ts";
export { MicroAdam } from "./src/optim/microadam.ts";
export { Adam, AdamW, AMSGrad } from "./src/optim/adam.ts";
export {
  GpuOptimizer,
  type GpuOptimizerStatus,
  type KernelConfig,
  type OptimizerSpec,
  type PlacementOptions,
  type PlannedGroup,
  type StepOptions,
} from "./src/optim/gpu_optimizer.ts";
export { MicroAdamCpu } from "./src/reference/microadam.ts";
export {
  AdamCpu,
  AdamFamilyCpu,
  AdamWCpu,
  AMSGradCpu,
} from "./src/reference/adam.ts";
export {
  MicroAdamTheoryCpu,
  type MicroAdamTheoryOptions,
  type ResolvedMicroAdamTheoryOptions,
} from "./src/reference/microadam_theory.ts";
export {
  type BaseResolvedOptions,
  CpuOptimizer,
  type CpuTensor,
  type StateArray,
  type TensorStepInput,
} from "./src/reference/cpu_optimizer.ts";
export type {
  AdamOptions,
  CommonOptions,
  DType,
  MicroAdamOptions,
  NonFinitePolicy,
  ResolvedAdamOptions,
  ResolvedMicroAdamOptions,
} from "./src/optim/options.ts";
export type { ParamGroup, ParamGroupSpec } from "./src/optim/groups.ts";
export {
  constant,
  cosineDecay,
  linearWarmup,
  type Schedule,
  stepDecay,
} from "./src/optim/schedule.ts";
export type {
  ConfigValue,
  OptimizerState,
  OptimizerStatus,
  TensorState,
} from "./src/optim/state.ts";
export type { MicroAdamGeometry } from "./src/optim/geometry.ts";
export { loadCheckpoint, saveCheckpoint } from "./src/checkpoint/file.ts";
export {
  CheckpointError,
  GpuUnavailableError,
  InvalidOptionError,
  NonFiniteGradientError,
  TensorMismatchError,
} from "./src/errors.ts";
export {
  bf16Bits,
  bf16ToNumber,
  fromBf16Array,
  toBf16Array,
} from "./src/numeric/bf16.ts";
