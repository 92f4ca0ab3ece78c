/**
 * What every WebGPU optimizer shares: param groups and schedules, tensor
 * validation and dispatch planning, and the order of one step (hyperparameters,
 * gathering, the non-finite check, the prologue, the optimizer's own kernels).
 * The pieces live beside it: `step_scalars.ts` (the per-step scalars and the
 * lr ring), `gather.ts` (copies of small tensors into arenas), `state_io.ts`
 * (state dicts), `lifecycle.ts` (owned buffers, GPU errors, device loss,
 * disposal) and `nonfinite_watch.ts` (policy "error"). Subclasses own their
 * state buffers and encode their kernels.
 *
 * @module
 */

import {
  describe,
  GpuCommandError,
  GpuUnavailableError,
  InvalidOptionError,
  StepLimitError,
  TensorMismatchError,
} from "../errors.ts";
import { MAX_COUNT } from "../core/limits.ts";
import { checkKeys, given } from "../core/checks.ts";
import { loadCheckpoint, saveCheckpoint } from "../checkpoint/file.ts";
import { matchState } from "../checkpoint/validate.ts";
import {
  bindBuffers,
  type BufferRange,
  createFilled,
  packBuffers,
  readRanges,
} from "../gpu/buffers.ts";
import { dispatchSize, type KernelName, pipeline } from "../gpu/kernels.ts";
import {
  type Plan,
  planDispatch,
  type PlanOptions,
  type Segment,
  vec4Aligned,
} from "../gpu/plan.ts";
import { CHECK_TILES, FOUND_INF_SKIP } from "../gpu/layout.ts";
import { type SegmentFields, segmentTable } from "../gpu/segments.ts";
import {
  type GpuTensor,
  type PlacedTensor,
  validateTensors,
} from "../gpu/tensors.ts";
import {
  groupHyper,
  normalizeGroups,
  type ParamGroup,
  type ParamGroupSpec,
} from "../core/groups.ts";
import type { NonFinitePolicy } from "../core/options.ts";
import type { Schedule } from "../core/schedule.ts";
import type {
  ConfigValue,
  OptimizerState,
  OptimizerStatus,
} from "../core/state.ts";
import {
  encodeFoundInf,
  type FoundInfSource,
  foundInfSource,
} from "./found_inf.ts";
import { encodeGatherIn, encodeGatherOut } from "./gather.ts";
import { Lifecycle } from "./lifecycle.ts";
import { NonFiniteWatch } from "./nonfinite_watch.ts";
import {
  readState,
  stateSizes,
  type TensorStateRanges,
  writeState,
} from "./state_io.ts";
import {
  HYPER_SLOTS,
  type KernelConfig,
  STEP_READBACK_BYTES,
  type StepHeader,
  StepScalars,
} from "./step_scalars.ts";

/** The option names of {@link PlacementOptions}. */
export const PLACEMENT_KEYS: readonly string[] = [
  "maxBindingBytes",
  "gatherBelow",
];

/** Where and how tensors are batched; the defaults suit every device. */
export interface PlacementOptions {
  /**
   * Largest byte size of one storage binding; tensors beyond it are split.
   * @default {the device's maxStorageBufferBindingSize}
   */
  maxBindingBytes?: number;
  /**
   * Tensors of at most this many elements in buffers of their own are copied
   * into one arena per step and updated by a single dispatch chain.
   * @default {65536}
   */
  gatherBelow?: number;
}

/**
 * Options of a WebGPU optimizer's `step()`.
 *
 * @example
 * ```ts
 * import { Adam, createTensor, requestDevice, type StepOptions } from "../../mod.ts";
 * const device = await requestDevice();
 * const w = createTensor(device, 8);
 * const opt = new Adam(device, [w]);
 * const options: StepOptions = { encoder: device.createCommandEncoder() };
 * opt.step(options); // encoded, not yet submitted
 * device.queue.submit([options.encoder!.finish()]);
 * console.log((await opt.status()).step); // 1
 * device.destroy();
 * ```
 */
export interface StepOptions {
  /**
   * Encode into this encoder instead of submitting. Submit it before the
   * next `step()`; at most 64 steps may wait unsubmitted.
   * @default {undefined} (a new encoder, submitted at once)
   */
  encoder?: GPUCommandEncoder;
  /**
   * Timestamps for the step's compute pass (needs the `timestamp-query`
   * feature, which `requestDevice` enables when available).
   * @default {undefined}
   */
  timestampWrites?: GPUComputePassTimestampWrites;
  /**
   * Per-kernel timing: every dispatch runs in a compute pass of its own that
   * writes timestamps `2i` and `2i + 1` of `querySet`; the kernel's name is
   * pushed onto `labels` (index i). Needs `timestamp-query`; for profiling,
   * not training (passes cost a little).
   * @default {undefined}
   */
  profile?: { querySet: GPUQuerySet; labels: string[] };
  /**
   * A flag that your own kernels set when they found a non-finite gradient
   * (a gradient scaler's unscale, a norm taken for clipping), as PyTorch's
   * fused optimizers take `found_inf`: the 4 bytes at the binding's offset
   * (of a `GPUBuffer` alone, its first 4; the buffer needs
   * `GPUBufferUsage.COPY_SRC`), read on the GPU when the step runs. Any bit
   * set but the sign's (f32 1.0, u32 1, NaN) skips the step as a non-finite
   * gradient does, state unchanged, counted in `status().skipped` and, with
   * `nonFinite: "error"`, reported as a `NonFiniteGradientError` whose
   * `foundInf` is true; 0 (or -0.0) lets it run. The flag is honoured under
   * every policy, `"unchecked"` included. Adam, AdamW and AMSGrad trust it
   * and leave out their own check for this step: one read of every gradient
   * less, 4 of the 32 bytes a parameter an f32 step moves, so a NaN that
   * the flag misses goes into the arithmetic as with `"unchecked"`.
   * MicroAdam checks inside its first kernel at no cost and does both.
   * @default {undefined} (the optimizer's own check, as `nonFinite` says)
   */
  foundInf?: GPUBuffer | GPUBufferBinding;
}

function checkStepOptions(options: StepOptions): void {
  const o = checkKeys(
    options,
    ["encoder", "timestampWrites", "profile", "foundInf"],
    "step options",
  );
  if (o.encoder !== undefined && !(o.encoder instanceof GPUCommandEncoder)) {
    throw new InvalidOptionError(
      `step options: encoder: expected a GPUCommandEncoder, got ${
        describe(o.encoder)
      }`,
    );
  }
  if (o.timestampWrites !== undefined && o.profile !== undefined) {
    throw new InvalidOptionError(
      "step options: timestampWrites and profile exclude each other (profile times every kernel in a pass of its own)",
    );
  }
}

/** What a subclass tells the base before planning. */
export interface OptimizerSpec {
  /** Kind recorded in state dicts. */
  name: string;
  /** Bytes per parameter element. */
  bytesPerElement: 2 | 4;
  /** Defaults for groups. */
  defaults: { lr: number; weightDecay: number; schedule?: Schedule };
  /** Non-finite gradient policy. */
  nonFinite: NonFinitePolicy;
  /** Whether weight decay is decoupled (`p ← p·(1 − lr·wd)`). */
  decoupledDecay: boolean;
  /** Kernel constants. */
  kernel: KernelConfig;
  /** Chunk unit and per-segment state sizes for the planner. */
  chunkUnit: PlanOptions["chunkUnit"];
  /** Bytes of each state binding a segment needs. */
  segmentStateBytes: PlanOptions["segmentStateBytes"];
  /** Binding pairs per batch on a device (see {@link PlanOptions.lanes}). @default {() => 1} */
  lanes?: (device: GPUDevice) => number;
  /** Which tensors may share a batch with other buffers' tensors. */
  laneable?: PlanOptions["laneable"];
  /** Elements above which a batch keeps its dispatches (see {@link PlanOptions.laneBelow}). */
  laneBelow?: number;
}

/** One batch's bindings and sizes, as the subclasses see it. */
export interface PlannedBatch {
  /** Params binding. */
  params: GPUBufferBinding;
  /** Grads binding. */
  grads: GPUBufferBinding;
  /** Segment table buffer (read by the kernels). */
  table: GPUBuffer;
  /** Blocks over all segments (MicroAdam top-k blocks). */
  blocks: number;
  /** 1024-element tiles over all segments. */
  tiles: number;
}

// State buffers are read back and written by state dicts and checkpoints.
const STATE_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
  GPUBufferUsage.COPY_DST;

/**
 * Base class of the WebGPU optimizers ({@link OptimizerSpec} says what a
 * subclass provides). Not used directly: see `MicroAdam`, `Adam`, `AdamW`
 * and `AMSGrad`.
 */
export abstract class GpuOptimizer {
  /** The device every buffer lives on. */
  readonly device: GPUDevice;
  /** Param groups; `lr`, `weightDecay` and `schedule` may be changed between steps. */
  readonly paramGroups: ParamGroup<GpuTensor>[];
  /** Non-finite gradient policy. */
  readonly nonFinite: NonFinitePolicy;
  /** Tensors in optimizer order. */
  protected readonly tensors: PlacedTensor[];
  /** The dispatch plan. */
  protected readonly plan: Plan;
  /** The per-step scalars (`Config`, `Step`, the non-finite flag). */
  protected readonly scalars: StepScalars;
  readonly #kind: string;
  readonly #bpe: 2 | 4;
  readonly #decoupled: boolean;
  readonly #life: Lifecycle;
  readonly #stateBuffers = new Set<GPUBuffer>();
  #packedStateBytes = 0; // of stateRanges (their alignment gaps are workspace)
  readonly #checkBatches: {
    pipe: GPUComputePipeline;
    bindGroup: GPUBindGroup;
    /** check_finite's workgroups: CHECK_TILES tiles each. */
    workgroups: number;
  }[] = [];
  readonly #prologueLayout: GPUBindGroupLayout;
  readonly #watch?: NonFiniteWatch;
  #calls = 0;
  // Step calls known not to have run (refused submits, reported once).
  #dropped = 0;
  #seenRefused = 0;
  readonly #perEncoder = new WeakMap<GPUCommandEncoder, number>();
  #encoding?: {
    encoder: GPUCommandEncoder;
    pass?: GPUComputePassEncoder;
    profile?: StepOptions["profile"];
  };

  /**
   * Validates options and tensors, plans the dispatches and allocates the
   * shared buffers (subclasses allocate their state).
   *
   * @param device Device owning the tensors' buffers.
   * @param params Tensors, or groups of tensors with their own lr / weight decay / schedule.
   * @param spec What the subclass needs planned.
   * @param placement Batching and splitting options.
   */
  protected constructor(
    device: GPUDevice,
    params: readonly (GpuTensor | ParamGroupSpec<GpuTensor>)[],
    spec: OptimizerSpec,
    placement: PlacementOptions = {},
  ) {
    if (!(device instanceof GPUDevice)) {
      throw new GpuUnavailableError(
        `expected a GPUDevice (see requestDevice()), got ${String(device)}`,
      );
    }
    this.device = device;
    this.#kind = spec.name;
    this.#bpe = spec.bytesPerElement;
    this.#decoupled = spec.decoupledDecay;
    this.nonFinite = spec.nonFinite;
    this.paramGroups = normalizeGroups(params, spec.defaults);
    this.tensors = validateTensors(
      this.paramGroups.map((g) => g.params),
      spec.bytesPerElement,
    );
    const limits = device.limits;
    const place = placement as Record<string, unknown>;
    const bindLimit = given(
      place,
      "maxBindingBytes",
      limits.maxStorageBufferBindingSize,
    );
    if (
      typeof bindLimit !== "number" || !Number.isInteger(bindLimit) ||
      bindLimit < 4096 || bindLimit > limits.maxStorageBufferBindingSize
    ) {
      throw new InvalidOptionError(
        `maxBindingBytes: expected an integer in [4096, ${limits.maxStorageBufferBindingSize}] (the device limit), got ${
          describe(bindLimit)
        }`,
      );
    }
    const gatherBelow = given(place, "gatherBelow", 65536);
    if (
      typeof gatherBelow !== "number" || !Number.isSafeInteger(gatherBelow) ||
      gatherBelow < 0
    ) {
      throw new InvalidOptionError(
        `gatherBelow: expected an integer >= 0, got ${describe(gatherBelow)}`,
      );
    }
    this.#life = new Lifecycle(device, spec.name);
    try {
      this.plan = planDispatch(device, this.tensors, {
        bytesPerElement: spec.bytesPerElement,
        bindLimit: Math.floor(bindLimit / 4) * 4,
        offsetAlignment: limits.minStorageBufferOffsetAlignment,
        gatherBelow,
        chunkUnit: spec.chunkUnit,
        segmentStateBytes: spec.segmentStateBytes,
        lanes: spec.lanes?.(device) ?? 1,
        laneable: spec.laneable,
        laneBelow: spec.laneBelow,
      });
      for (const a of this.plan.arenas) this.own(a);
      const own = (b: GPUBuffer) => this.own(b);
      this.scalars = new StepScalars(
        device,
        spec.kernel,
        this.paramGroups.length,
        own,
      );
      if (spec.nonFinite === "error") {
        this.#watch = new NonFiniteWatch(
          device,
          this.scalars.step,
          own,
          (i) => this.tensors[i]?.name ?? "?",
        );
      }
      this.#prologueLayout = this.pipeline("prologue").getBindGroupLayout(0);
    } catch (e) {
      throw this.abandonConstruction(e);
    }
  }

  /** Kind recorded in state dicts and checkpoints, e.g. `"MicroAdam"`. */
  get kind(): string {
    return this.#kind;
  }

  /** Number of `step()` calls so far (schedules are evaluated at this count). */
  get calls(): number {
    return this.#calls;
  }

  /**
   * The learning rate of param group `group` at the last `step()` call: its
   * base `lr` times its schedule at that call (at call 1 before any step).
   * The counterpart of PyTorch's `param_groups[i]["lr"]` under a scheduler.
   *
   * @example
   * ```ts
   * import { Adam, cosineDecay, createTensor, requestDevice } from "../../mod.ts";
   * const device = await requestDevice();
   * const opt = new Adam(device, [createTensor(device, 4)], { lr: 0.1, schedule: cosineDecay(3) });
   * opt.step();
   * opt.step();
   * console.log(opt.currentLr()); // 0.05
   * device.destroy();
   * ```
   */
  currentLr(group = 0): number {
    const g = this.paramGroups[group];
    if (g === undefined) {
      throw new InvalidOptionError(
        `group: expected an index in [0, ${this.paramGroups.length}), got ${group}`,
      );
    }
    return groupHyper(g, Math.max(this.#calls, 1), group, this.#decoupled).lr;
  }

  /** The state-shaping configuration a checkpoint must match. */
  protected abstract stateConfig(): Record<string, ConfigValue>;

  /**
   * Byte ranges of tensor `i`'s state buffers, in the checkpoint layout,
   * once the GPU has executed `calls` step calls (double-buffered state
   * alternates with them).
   */
  protected abstract tensorStateRanges(
    i: number,
    calls: number,
  ): TensorStateRanges;

  /**
   * Extra checks of a state dict beyond sizes and config; throw
   * `CheckpointError`. Nothing is loaded yet when it runs.
   */
  protected validateState(_state: OptimizerState): void {}

  /** Encodes the optimizer's own kernels (with {@link GpuOptimizer.dispatch}), after the prologue. */
  protected abstract encodeKernels(): void;

  /**
   * Encodes what runs before the prologue: the search for non-finite
   * gradients, which sets the flag the prologue turns into a skipped step.
   * By default `check_finite` over every batch of {@link planBatches}, which
   * plans none with policy `"unchecked"` (then nothing writes the flag, which
   * stays "no bad tensor", so the prologue never skips a step for it); an
   * optimizer whose first kernel reads every gradient anyway checks there
   * instead (its kernels must then leave the state as it was when the
   * prologue skips the step).
   *
   * @param flagged The step has the caller's found-inf flag
   * (`StepOptions.foundInf`), which vouches for the gradients: the default
   * encodes no check then.
   */
  protected encodeNonFiniteCheck(flagged: boolean): void {
    if (flagged) return;
    for (const c of this.#checkBatches) {
      this.dispatch(c.pipe, c.bindGroup, c.workgroups, "check_finite");
    }
  }

  /**
   * Closes the error scopes opened by the base constructor; the last call of
   * every subclass constructor. A GPU error there (out of memory, an invalid
   * binding) makes `step()`, `status()` and `stateDict()` throw it.
   */
  protected finishConstruction(): void {
    this.#life.finishConstruction();
  }

  /**
   * Undoes a constructor that threw (closes the error scopes, frees the
   * buffers) and returns the error to throw: WebGPU's own `OperationError`
   * (a destroyed device) becomes a `GpuUnavailableError`.
   */
  protected abandonConstruction(e: unknown): unknown {
    this.#life.abandonConstruction();
    if (e instanceof Error && e.name === "OperationError") {
      return this.#life.lostError(e.message);
    }
    return e;
  }

  /** Registers a buffer to destroy on dispose. */
  protected own(buffer: GPUBuffer, state = false): GPUBuffer {
    this.#life.own(buffer);
    if (state) this.#stateBuffers.add(buffer);
    return buffer;
  }

  /** Creates a zeroed state buffer (counted by {@link stateBytes}). */
  protected stateBuffer(label: string, bytes: number): GPUBuffer {
    return this.own(
      this.device.createBuffer({
        label,
        size: Math.max(4, Math.ceil(bytes / 4) * 4),
        usage: STATE_USAGE,
      }),
      true,
    );
  }

  /**
   * Zeroed ranges of these byte sizes with the state buffers' usage, packed
   * into as few buffers as the device allows (one buffer per range wastes
   * memory where the allocator places buffers in larger blocks: see
   * `packBuffers`), owned as workspace.
   */
  protected packedRanges(
    label: string,
    sizes: readonly number[],
  ): BufferRange[] {
    const { buffers, ranges } = packBuffers(this.device, sizes, {
      label,
      usage: STATE_USAGE,
    });
    for (const b of buffers) this.own(b);
    return ranges;
  }

  /**
   * {@link packedRanges} counted as state by {@link stateBytes} (their
   * alignment gaps stay workspace).
   */
  protected stateRanges(
    label: string,
    sizes: readonly number[],
  ): BufferRange[] {
    const ranges = this.packedRanges(label, sizes);
    for (const r of ranges) this.#packedStateBytes += r.size;
    return ranges;
  }

  /**
   * The cached pipeline for a kernel with this optimizer's dtype (and, for
   * MicroAdam's one-pass kernels, `lanes` binding pairs).
   */
  protected pipeline(
    name: KernelName,
    bf16 = false,
    lanes = 1,
  ): GPUComputePipeline {
    return pipeline(this.device, name, bf16 ? { BF16: 1 } : {}, lanes);
  }

  /**
   * The fields of a segment's table entry that every optimizer fills: where
   * the segment lies in its tensor and in the bindings, its tensor and param
   * group. Subclasses add their own (see {@link SegmentFields}).
   */
  protected segmentFields(s: Segment): SegmentFields {
    const t = this.tensors[s.tensor];
    return {
      coordStart: s.coordStart,
      len: s.len,
      d: t.length,
      paramOff: s.paramOff,
      gradOff: s.gradOff,
      paramGroup: t.group,
      tensor: t.index,
      lane: s.lane ?? 0,
    };
  }

  /**
   * Builds each batch's segment table (fields from `extra`) and the
   * non-finite check for its gradients (none with policy `"unchecked"`).
   * Call once from the subclass constructor.
   */
  protected planBatches(
    extra: (batch: number, segment: number) => Partial<SegmentFields>,
    bf16 = false,
  ): PlannedBatch[] {
    return this.plan.batches.map((b, bi) => {
      const { words, blocks, tiles } = segmentTable(
        b.segments.map((s, si) => ({
          ...this.segmentFields(s),
          ...extra(bi, si),
        })),
      );
      const table = this.own(
        createFilled(this.device, words, GPUBufferUsage.STORAGE, "segments"),
      );
      const { params, grads } = b;
      if (this.nonFinite !== "unchecked") {
        // Four gradients per load where the batch allows it.
        const check = this.pipeline(
          !bf16 && vec4Aligned(b.segments) ? "checkFinite4" : "checkFinite",
          bf16,
        );
        this.#checkBatches.push({
          pipe: check,
          workgroups: Math.ceil(tiles / CHECK_TILES),
          bindGroup: bindBuffers(this.device, check.getBindGroupLayout(0), [
            table,
            grads,
            this.scalars.flags,
          ]),
        });
      }
      return { params, grads, table, blocks, tiles };
    });
  }

  /**
   * Dispatches `count` workgroups (folded into 2D past the per-dimension
   * limit) into the step's compute pass; `label` names it in profiles,
   * `dynamicOffsets` go with the bind group.
   */
  protected dispatch(
    pipe: GPUComputePipeline,
    bindGroup: GPUBindGroup,
    count: number,
    label: string,
    dynamicOffsets: number[] = [],
  ): void {
    if (count === 0) return;
    const encoding = this.#encoding;
    if (!encoding) throw new Error("dispatch() is only valid inside step()");
    const { encoder, profile } = encoding;
    let index = 0;
    if (profile) index = profile.labels.push(label) - 1;
    const pass = profile
      ? encoder.beginComputePass({
        label,
        timestampWrites: {
          querySet: profile.querySet,
          beginningOfPassWriteIndex: 2 * index,
          endOfPassWriteIndex: 2 * index + 1,
        },
      })
      : encoding.pass!;
    pass.setPipeline(pipe);
    pass.setBindGroup(0, bindGroup, dynamicOffsets);
    const [x, y] = dispatchSize(
      count,
      this.device.limits.maxComputeWorkgroupsPerDimension,
    );
    pass.dispatchWorkgroups(x, y);
    if (profile) pass.end();
  }

  /**
   * Applies one optimizer step to every tensor: encodes the kernels and
   * submits them (or encodes into `options.encoder`). Nothing is read back:
   * a non-finite gradient is detected on the GPU, which then skips the whole
   * step and leaves the state exactly as it was (with policy `"unchecked"`
   * it is not looked for, and goes into the arithmetic).
   *
   * Throws, before encoding anything: `NonFiniteGradientError` (policy
   * `"error"`) once an earlier step has been found non-finite;
   * `GpuCommandError` once the GPU has refused an earlier step (then that
   * step did not run); `StepLimitError` past the counters' range or the 64
   * steps one encoder may hold; `TensorMismatchError` when a tensor's buffer
   * is mapped; `InvalidOptionError` for an lr or weight decay (a group's, or
   * a schedule's output) that is not a finite f32 >= 0, and for a
   * `foundInf` that is not a COPY_SRC buffer with the flag at a multiple of
   * 4 bytes inside it;
   * `GpuUnavailableError` after the device was lost; `DisposedError`.
   */
  step(options: StepOptions = {}): void {
    this.#life.assertUsable();
    checkStepOptions(options);
    const found = options.foundInf === undefined
      ? undefined
      : foundInfSource(options.foundInf);
    this.#life.throwPending();
    const pending = this.#watch?.take();
    if (pending) throw pending;
    this.#assertSameTensors();
    if (this.#calls >= MAX_COUNT) {
      throw new StepLimitError(
        `${this.#kind}: ${this.#calls} step calls, the most its u32 counters hold; save the parameters and start a new optimizer`,
      );
    }
    const user = options.encoder;
    const queued = user ? (this.#perEncoder.get(user) ?? 0) : 0;
    if (queued >= HYPER_SLOTS) {
      throw new StepLimitError(
        `${this.#kind}: ${queued} steps are already encoded into this encoder, the most that may wait for one submit (each keeps its learning rate in one of ${HYPER_SLOTS} slots); submit it first`,
      );
    }
    for (const t of this.tensors) {
      for (const b of [t.param, t.grad]) {
        if (b.mapState !== "unmapped") {
          throw new TensorMismatchError(
            `${this.#kind}: tensor ${t.index} ("${t.name}"): its ${
              b === t.param ? "param" : "grad"
            } buffer is ${b.mapState}; unmap it before step()`,
          );
        }
      }
    }
    const call = this.#calls + 1;
    const hyper = this.paramGroups.map((g, i) =>
      groupHyper(g, call, i, this.#decoupled)
    );
    this.#life.beginStep();
    try {
      this.#encodeStep(call, hyper, options, found);
    } finally {
      // A refused step never runs: it will not show in the GPU's counters.
      this.#life.endStep(call, () => this.#dropped++);
    }
    this.#calls = call;
    if (user) this.#perEncoder.set(user, queued + 1);
    this.#watch?.poll();
  }

  // Encodes one step (and submits it, unless it joins the caller's encoder).
  #encodeStep(
    call: number,
    hyper: { lr: number; weightDecay: number }[],
    options: StepOptions,
    found: FoundInfSource | undefined,
  ): void {
    const enc = options.encoder ??
      this.device.createCommandEncoder({ label: `${this.#kind} step` });
    this.scalars.queueHyper(call, hyper, !options.encoder);
    encodeGatherIn(enc, this.plan.batches);
    if (found) encodeFoundInf(enc, found, this.scalars.flags);
    const pass = options.profile ? undefined : enc.beginComputePass({
      label: `${this.#kind} step`,
      timestampWrites: options.timestampWrites,
    });
    this.#encoding = { encoder: enc, pass, profile: options.profile };
    try {
      this.encodeNonFiniteCheck(found !== undefined);
      this.dispatch(
        this.pipeline("prologue"),
        this.scalars.prologueBindGroup(this.#prologueLayout),
        1,
        "prologue",
        this.scalars.prologueOffsets(call),
      );
      this.encodeKernels();
    } finally {
      pass?.end();
      this.#encoding = undefined;
    }
    encodeGatherOut(enc, this.plan.batches);
    if (!options.encoder) this.device.queue.submit([enc.finish()]);
  }

  /**
   * Counters read back from the GPU (one small readback; call it when you
   * need them, not every step). With `step({ encoder })`, submit the encoder
   * before calling this.
   *
   * Every step call either ran (applied or skipped) or raised an error: this
   * throws `GpuCommandError` when steps never ran on the GPU (a submit it
   * refused, an encoder never submitted), `StepLimitError` when steps were
   * refused because more than 64 waited for one submit, and, with policy
   * `"error"`, the `NonFiniteGradientError` of a skipped step not yet
   * reported. Each is reported once.
   */
  async status(): Promise<OptimizerStatus> {
    await this.#settle();
    const h = await this.#readHeader();
    this.#watch?.observe(h);
    this.#life.throwPending();
    const missing = this.#calls - this.#dropped - h.calls;
    if (missing < 0) this.#dropped += missing; // written off, then submitted
    if (missing > 0) {
      // Reported once: from now on the GPU's count is the reference.
      this.#dropped += missing;
      throw new GpuCommandError(
        `${this.#kind}: ${missing} step call(s) never ran on the GPU (${this.#calls} made, ${h.calls} executed): an encoder passed to step() that was not submitted before status(), or a submit the GPU refused`,
      );
    }
    if (h.refused > this.#seenRefused) {
      const n = h.refused - this.#seenRefused;
      this.#seenRefused = h.refused;
      throw new StepLimitError(
        `${this.#kind}: ${n} step call(s) were refused and not applied: more than ${HYPER_SLOTS} steps were encoded before one submit, and each step's learning rate waits in one of ${HYPER_SLOTS} slots; submit at least every ${HYPER_SLOTS} steps`,
      );
    }
    const pending = this.#watch?.take();
    if (pending) throw pending;
    const status: OptimizerStatus = {
      step: h.t,
      calls: this.#calls,
      skipped: h.skipped,
    };
    // 0: no skip yet; FOUND_INF_SKIP: the last came from the caller's flag.
    const bad = h.badTensor && h.badTensor !== FOUND_INF_SKIP
      ? this.tensors[h.badTensor - 1]?.name
      : undefined;
    if (bad !== undefined) status.lastNonFiniteTensor = bad;
    return status;
  }

  // Waits for the construction's and the steps' error scopes and the watch.
  async #settle(): Promise<void> {
    this.#life.assertUsable();
    await this.#life.settle();
    await this.#watch?.settle();
    this.#life.assertUsable();
  }

  /** Exact bytes of optimizer state allocated on the device (what a checkpoint holds per tensor). */
  stateBytes(): number {
    if (this.#life.disposed) this.#life.assertUsable();
    let n = this.#packedStateBytes;
    for (const b of this.#stateBuffers) n += b.size;
    return n;
  }

  /**
   * Device memory this optimizer allocated: `state` as in {@link stateBytes},
   * `workspace` for everything else (scratch, tables, gather arenas, scalars,
   * the readback buffer of policy "error").
   */
  memoryBytes(): { state: number; workspace: number } {
    let total = 0;
    for (const b of this.#life.owned) total += b.size;
    const state = this.stateBytes();
    return { state, workspace: total - state };
  }

  /**
   * Reads the whole state back into plain data (see {@link OptimizerState}).
   * Rejects with `DisposedError` when the optimizer is disposed before the
   * bytes arrive, so a pending `save()` never writes a state it did not read.
   */
  async stateDict(): Promise<OptimizerState> {
    await this.#settle();
    this.#life.throwPending();
    // The ranges depend on the calls the GPU has executed: read that first,
    // and again with the state; a step that came in between means retry.
    let calls = (await this.#readHeader()).calls;
    for (;;) {
      const perTensor = this.tensors.map((_, i) =>
        this.tensorStateRanges(i, calls)
      );
      const { header, buffers } = await this.#life.read(() =>
        readState(this.device, this.scalars.step, perTensor)
      );
      if (header.calls !== calls) {
        calls = header.calls;
        continue;
      }
      return {
        optimizer: this.#kind,
        config: this.stateConfig(),
        step: header.t,
        calls: this.#calls,
        skipped: header.skipped,
        ring: header.ring,
        tensors: this.tensors.map((t, i) => ({
          name: t.name,
          length: t.length,
          buffers: buffers[i],
        })),
      };
    }
  }

  async #readHeader(): Promise<StepHeader> {
    const [bytes] = await this.#life.read(() =>
      readRanges(this.device, [{
        buffer: this.scalars.step,
        offset: 0,
        size: STEP_READBACK_BYTES,
      }])
    );
    return StepScalars.decode(bytes);
  }

  /**
   * Replaces the state with `state` (from {@link stateDict}, a checkpoint, or
   * a CPU optimizer of the same kind and config). Tensors given names are
   * matched by name, the others by position. A state that does not fit, or
   * holds values the algorithm cannot produce (NaN, a negative second
   * moment, …), throws `CheckpointError` and changes nothing; the checks all
   * run before the first byte is written.
   */
  loadStateDict(state: OptimizerState): void {
    this.#life.assertUsable();
    // After the load the GPU has executed `state.calls` calls (see write()).
    const calls = Number.isSafeInteger(state?.calls) ? state.calls : 0;
    const perTensor = this.tensors.map((_, i) =>
      this.tensorStateRanges(i, calls)
    );
    const matched = matchState(state, {
      optimizer: this.#kind,
      config: this.stateConfig(),
      tensors: perTensor.map((r, i) => ({
        name: this.tensors[i].name,
        named: this.tensors[i].named,
        length: this.tensors[i].length,
        buffers: stateSizes(r),
      })),
      maxCounter: MAX_COUNT,
    });
    this.validateState(matched);
    writeState(
      this.device.queue,
      perTensor,
      matched.tensors.map((t) => t.buffers),
    );
    this.scalars.write(matched);
    this.#calls = matched.calls;
    this.#dropped = 0;
    this.#seenRefused = 0;
    this.#watch?.reset(matched.skipped);
  }

  /** Saves the state to `path` atomically (temp file, fsync, rename). */
  async save(path: string): Promise<void> {
    await saveCheckpoint(path, await this.stateDict());
  }

  /** Loads a checkpoint written by {@link save} (or by the CPU optimizer of the same kind). */
  async load(path: string): Promise<void> {
    this.loadStateDict(await loadCheckpoint(path));
  }

  /** Frees every buffer this optimizer allocated. Further use throws. */
  dispose(): void {
    this.#life.dispose();
  }

  /** Same as {@link dispose}, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  // The dispatch plan was made for the tensors given at construction.
  #assertSameTensors(): void {
    let i = 0;
    this.paramGroups.forEach((g, gi) => {
      if (typeof g !== "object" || g === null || !Array.isArray(g.params)) {
        throw new TensorMismatchError(
          `group ${gi}: expected a param group { params, lr, weightDecay }, got ${
            describe(g)
          }; the groups' tensors are fixed at construction`,
        );
      }
      for (const t of g.params) {
        const placed = this.tensors[i++];
        if (
          !placed || placed.group !== gi || placed.param !== t.param ||
          placed.grad !== t.grad || placed.length !== t.length ||
          placed.offset !== (t.offset ?? 0)
        ) {
          throw new TensorMismatchError(
            `group ${gi}: its tensors changed after construction (tensor ${
              i - 1
            }); the dispatch plan is fixed, so create a new optimizer`,
          );
        }
      }
    });
    if (i !== this.tensors.length) {
      throw new TensorMismatchError(
        `param groups hold ${i} tensors, the optimizer was built with ${this.tensors.length}; create a new optimizer`,
      );
    }
  }
}
