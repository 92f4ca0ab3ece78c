/**
 * Building blocks for writing an optimizer of your own, the second entry
 * point of the package (`@microadam/microadam/extend`). Everyday use needs
 * only `mod.ts`.
 *
 * - **WebGPU**: subclass {@link GpuOptimizer} (see `src/optim/adam.ts` for the
 *   smallest complete example). It validates tensors and groups, plans the
 *   batches ({@link planDispatch}: batching, gathering, splitting past the
 *   binding limit), runs the non-finite check and the prologue that advance
 *   the step on the GPU, and owns state dicts, checkpoints and disposal. A
 *   subclass allocates its state with `stateBuffer()`, builds its bind groups
 *   from `planBatches()`, and encodes its kernels in `encodeKernels()`.
 *   Kernels are WGSL assembled by {@link pipeline} from the files in
 *   `kernels/` (shared structs in `src/gpu/layout.ts`).
 * - **CPU**: subclass {@link CpuOptimizer} and implement `applyStep()`.
 * - The numeric helpers the exact kernels and references share (bf16
 *   rounding, the f32 power and fma), the MicroAdam state geometry, and the
 *   checkpoint codec.
 *
 * These are less stable than `mod.ts`: they follow the kernels.
 *
 * @example
 * ```ts
 * import { CpuOptimizer, type TensorStepInput } from "./extend.ts";
 *
 * // Plain SGD on the CPU, with groups, schedules, the non-finite guard and
 * // state dicts inherited.
 * class SgdCpu extends CpuOptimizer<{ lr: number; weightDecay: number; nonFinite: "skip" }> {
 *   constructor(params: { param: Float32Array; grad: Float32Array }[], lr: number) {
 *     super("Sgd", params, { lr, weightDecay: 0, nonFinite: "skip" }, "f32");
 *     this.initState(this.lengths.map(() => ({})));
 *   }
 *   protected stateConfig() {
 *     return {};
 *   }
 *   protected applyStep(_t: number, tensors: TensorStepInput[]) {
 *     for (const { tensor, lr } of tensors) {
 *       const p = tensor.param as Float32Array;
 *       const g = tensor.grad as Float32Array;
 *       for (let i = 0; i < p.length; i++) p[i] -= lr * g[i];
 *     }
 *   }
 * }
 * const param = new Float32Array([1, 2]);
 * new SgdCpu([{ param, grad: new Float32Array([1, 1]) }], 0.5).step();
 * console.log(param); // Float32Array(2) [ 0.5, 1.5 ]
 * ```
 *
 * @module
 */

// WebGPU optimizers: the base class and what it plans and encodes.
export {
  GpuOptimizer,
  type OptimizerSpec,
  type PlacementOptions,
  type PlannedBatch,
} from "./src/optim/gpu_optimizer.ts";
export {
  type KernelConfig,
  type StepHeader,
  StepScalars,
} from "./src/optim/step_scalars.ts";
export type { TensorStateRanges } from "./src/optim/state_io.ts";
export {
  type Batch,
  type Binding,
  type GatherCopy,
  type LaneBindings,
  type Plan,
  planDispatch,
  type PlanOptions,
  type Segment,
} from "./src/gpu/plan.ts";
export { type SegmentFields, segmentTable } from "./src/gpu/segments.ts";
export {
  dispatchSize,
  fastLanes,
  KERNEL_NAMES,
  type KernelName,
  kernelSource,
  type KernelVariant,
  pipeline,
} from "./src/gpu/kernels.ts";
export { type PlacedTensor, validateTensors } from "./src/gpu/tensors.ts";
export type { TensorBuffer } from "./src/gpu/tensor_io.ts";
export {
  type BufferRange,
  createFilled,
  packBuffers,
  type PackOptions,
  readBuffer,
  readRanges,
} from "./src/gpu/buffers.ts";
export {
  hasExactFma,
  hasSubgroups,
  probeExactFma,
  probeSubgroups,
} from "./src/gpu/capabilities.ts";

// CPU optimizers.
export {
  allWithinLimit,
  type BaseResolvedOptions,
  CpuOptimizer,
  type StateArray,
  type TensorStepInput,
} from "./src/reference/cpu_optimizer.ts";
export { AdamFamilyCpu } from "./src/reference/adam.ts";
export { topkBlock } from "./src/reference/microadam.ts";
export {
  type ResolvedMicroAdamTheoryOptions,
  resolveMicroAdamTheoryOptions,
} from "./src/reference/microadam_theory.ts";

// Backend-neutral pieces.
export {
  type CheckedNonFinitePolicy,
  type CommonOptions,
  type DType,
  type NonFinitePolicy,
  resolveAdamOptions,
  type ResolvedAdamOptions,
  type ResolvedMicroAdamOptions,
  resolveMicroAdamOptions,
} from "./src/core/options.ts";
export {
  groupHyper,
  normalizeGroups,
  type ParamGroup,
} from "./src/core/groups.ts";
export type { ConfigValue, TensorState } from "./src/core/state.ts";
export {
  GRADIENT_LIMIT_LOG2,
  MAX_COUNT,
  MAX_TOPK_BLOCK,
} from "./src/core/limits.ts";
export {
  type MicroAdamGeometry,
  microAdamGeometry,
  type MicroAdamShape,
} from "./src/core/geometry.ts";

// Checkpoint codec and numerics.
export {
  CHECKPOINT_VERSION,
  type CheckpointExtras,
  decodeCheckpoint,
  decodeCheckpointWithExtras,
  encodeCheckpoint,
  type ParamData,
} from "./src/checkpoint/format.ts";
export { bf16Bits, bf16ToNumber, roundBf16 } from "./src/numeric/bf16.ts";
export { fmaF32, powF32 } from "./src/numeric/f32.ts";
