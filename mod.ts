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
 * This entry point holds what a user calls. Building blocks for writing an
 * optimizer of your own (the base classes, the dispatch planner, the kernel
 * pipelines, the numeric helpers) are in the second entry point,
 * `@microadam/microadam/extend` (`extend.ts`).
 *
 * @example
 * ```ts
 * import { createTensor, MicroAdam, readTensor, requestDevice, writeTensor } from "./mod.ts";
 *
 * const device = await requestDevice();
 * const w = createTensor(device, new Float32Array(4096).fill(1), { name: "w" });
 *
 * const opt = new MicroAdam(device, [w], { lr: 1e-3 });
 * for (let i = 0; i < 3; i++) {
 *   // ... your kernels write the gradient into `w.grad`; here, from the host:
 *   writeTensor(device, w, new Float32Array(4096).map(() => Math.random() - 0.5));
 *   opt.step();
 * }
 * const { step, skipped } = await opt.status();
 * console.log(step, skipped, opt.stateBytes() / w.length < 1); // 3 0 true
 * console.log((await readTensor(device, w)).some((x) => x !== 1)); // true
 * opt.dispose();
 * device.destroy();
 * ```
 *
 * @module
 */

// WebGPU optimizers.
export { MicroAdam } from "./src/optim/microadam.ts";
export { Adam, AdamW, AMSGrad } from "./src/optim/adam.ts";
export type { StepOptions } from "./src/optim/gpu_optimizer.ts";

// Their exact CPU twins.
export { MicroAdamCpu } from "./src/reference/microadam.ts";
export { AdamCpu, AdamWCpu, AMSGradCpu } from "./src/reference/adam.ts";
export {
  MicroAdamTheoryCpu,
  type MicroAdamTheoryOptions,
} from "./src/reference/microadam_theory.ts";

// Options, groups, schedules, state.
export type {
  AdamOptions,
  CheckedNonFinitePolicy,
  MicroAdamOptions,
} from "./src/core/options.ts";
export type { ParamGroupSpec } from "./src/core/groups.ts";
export {
  constant,
  cosineDecay,
  linearWarmup,
  type Schedule,
  stepDecay,
} from "./src/core/schedule.ts";
export type { OptimizerState, OptimizerStatus } from "./src/core/state.ts";

// Devices and tensors.
export { requestDevice, type RequestDeviceOptions } from "./src/gpu/device.ts";
export type { GpuTensor } from "./src/gpu/tensors.ts";
export type {
  CpuStepOptions,
  CpuTensor,
} from "./src/reference/cpu_optimizer.ts";
export {
  createTensor,
  type CreateTensorOptions,
  createTensors,
  type CreateTensorsOptions,
  readTensor,
  writeTensor,
} from "./src/gpu/tensor_io.ts";
export { fromBf16Array, toBf16Array } from "./src/numeric/bf16.ts";

// Checkpoints.
export { loadCheckpoint, saveCheckpoint } from "./src/checkpoint/file.ts";

// Training: parameters and optimizer state together in one atomic file (issue 7).
export {
  type LoadedTrainingState,
  loadTrainingState,
  saveTrainingState,
  type TrainingParts,
} from "./src/train/training_state.ts";

// Errors.
export {
  CheckpointError,
  DatasetError,
  DisposedError,
  GpuCommandError,
  GpuUnavailableError,
  InvalidOptionError,
  NonFiniteGradientError,
  StepLimitError,
  TensorMismatchError,
} from "./src/errors.ts";
