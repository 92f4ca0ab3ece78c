/**
 * What every WebGPU optimizer shares: param groups and schedules, tensor
 * validation and dispatch planning, the per-step scalars kept on the GPU,
 * the non-finite guard, status, state dicts and checkpoints, and disposal.
 * Subclasses own their state buffers and encode their kernels.
 *
 * @module
 */

import {
  CheckpointError,
  GpuUnavailableError,
  InvalidOptionError,
  NonFiniteGradientError,
  TensorMismatchError,
} from "../errors.ts";
import { loadCheckpoint, saveCheckpoint } from "../checkpoint/file.ts";
import { assertStateMatches } from "../checkpoint/validate.ts";
import { type BufferRange, createFilled, readRanges } from "../gpu/buffers.ts";
import { dispatchSize, type KernelName, pipeline } from "../gpu/kernels.ts";
import { type Plan, planDispatch, type PlanOptions } from "../gpu/plan.ts";
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
} from "./groups.ts";
import type { NonFinitePolicy } from "./options.ts";
import type { Schedule } from "./schedule.ts";
import type { ConfigValue, OptimizerState, OptimizerStatus } from "./state.ts";

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

/** Options of {@link GpuOptimizer.step}. */
export interface StepOptions {
  /**
   * Encode into this encoder instead of submitting. Submit it before the
   * next `step()`; at most 64 steps may wait unsubmitted.
   */
  encoder?: GPUCommandEncoder;
  /**
   * Timestamps for the step's compute pass (needs the `timestamp-query`
   * feature, which {@link requestDevice} enables when available).
   */
  timestampWrites?: GPUComputePassTimestampWrites;
  /**
   * Per-kernel timing: every dispatch runs in a compute pass of its own that
   * writes timestamps `2i` and `2i + 1` of `querySet`; the kernel's name is
   * pushed onto `labels` (index i). Needs `timestamp-query`; for profiling,
   * not training (passes cost a little).
   */
  profile?: { querySet: GPUQuerySet; labels: string[] };
}

/** {@link OptimizerStatus} plus what the GPU reported about skipped steps. */
export interface GpuOptimizerStatus extends OptimizerStatus {
  /** Name of the non-finite tensor that caused the last skipped step. */
  lastNonFiniteTensor?: string;
}

/** Scalars the kernels read from the `Config` uniform. */
export interface KernelConfig {
  /** β1. */
  beta1: number;
  /** β2. */
  beta2: number;
  /** ε. */
  eps: number;
  /** 0 Adam family, 1 MicroAdam. */
  kind: 0 | 1;
  /** MicroAdam window m. */
  window?: number;
  /** MicroAdam EF block size Q. */
  efBlock?: number;
  /** AMSGrad max. */
  amsgrad?: boolean;
  /** Decoupled weight decay. */
  decoupled?: boolean;
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
  /** Kernel constants. */
  kernel: KernelConfig;
  /** Chunk unit and per-segment state sizes for the planner. */
  chunkUnit: PlanOptions["chunkUnit"];
  /** Bytes of each state binding a segment needs. */
  segmentStateBytes: PlanOptions["segmentStateBytes"];
}

const STEP_HEADER_BYTES = 64;
const HYPER_SLOTS = 64;
const NO_BAD_TENSOR = 0xffffffff;

/** One group's bindings and sizes, as the subclasses see it. */
export interface PlannedGroup {
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

/** Base class of the WebGPU optimizers. */
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
  /** Uniform with the kernel constants. */
  protected readonly configBuffer: GPUBuffer;
  /** Step scalars and per-group hyperparameters (kernels/layout.wgsl `Step`). */
  protected readonly stepBuffer: GPUBuffer;
  /** Non-finite flag written by the check kernel. */
  protected readonly flagsBuffer: GPUBuffer;
  readonly #kind: string;
  readonly #bpe: 2 | 4;
  readonly #hyperRing: GPUBuffer;
  readonly #hyperStride: number;
  readonly #owned: GPUBuffer[] = [];
  readonly #stateBuffers = new Set<GPUBuffer>();
  readonly #checkGroups: { bindGroup: GPUBindGroup; tiles: number }[] = [];
  readonly #prologueGroup: GPUBindGroup;
  #calls = 0;
  #encoding?: {
    encoder: GPUCommandEncoder;
    pass?: GPUComputePassEncoder;
    profile?: StepOptions["profile"];
  };
  #construction?: Promise<void>;
  #constructionError?: Error;
  #disposed = false;
  #lost?: string;
  #pendingError?: Error;
  #inFlight = new Set<Promise<void>>();
  #unsubmitted: { staging: GPUBuffer; call: number }[] = [];
  #stagingPool: GPUBuffer[] = [];

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
    this.nonFinite = spec.nonFinite;
    this.paramGroups = normalizeGroups(params, spec.defaults);
    this.tensors = validateTensors(
      this.paramGroups.map((g) => g.params),
      spec.bytesPerElement,
    );
    device.lost.then((info) => {
      this.#lost = info.message || String(info.reason);
    });
    const limits = device.limits;
    const bindLimit = placement.maxBindingBytes ??
      limits.maxStorageBufferBindingSize;
    if (
      !Number.isInteger(bindLimit) || bindLimit < 4096 ||
      bindLimit > limits.maxStorageBufferBindingSize
    ) {
      throw new InvalidOptionError(
        `maxBindingBytes: expected an integer in [4096, ${limits.maxStorageBufferBindingSize}] (the device limit), got ${bindLimit}`,
      );
    }
    const gatherBelow = placement.gatherBelow ?? 65536;
    if (!Number.isInteger(gatherBelow) || gatherBelow < 0) {
      throw new InvalidOptionError(
        `gatherBelow: expected an integer >= 0, got ${gatherBelow}`,
      );
    }
    // Buffer and pipeline errors arrive asynchronously: catch the
    // constructor's in error scopes (closed by finishConstruction).
    device.pushErrorScope("out-of-memory");
    device.pushErrorScope("validation");
    try {
      this.plan = planDispatch(device, this.tensors, {
        bytesPerElement: spec.bytesPerElement,
        bindLimit: Math.floor(bindLimit / 4) * 4,
        offsetAlignment: limits.minStorageBufferOffsetAlignment,
        gatherBelow,
        chunkUnit: spec.chunkUnit,
        segmentStateBytes: spec.segmentStateBytes,
      });
      this.#owned.push(...this.plan.arenas);

      const k = spec.kernel;
      const cfg = new ArrayBuffer(32);
      new Float32Array(cfg, 0, 3).set([k.beta1, k.beta2, k.eps]);
      new Uint32Array(cfg, 12, 5).set([
        k.window ?? 1,
        k.efBlock ?? 1,
        k.kind,
        k.amsgrad ? 1 : 0,
        k.decoupled ? 1 : 0,
      ]);
      this.configBuffer = this.own(
        createFilled(
          device,
          new Uint8Array(cfg),
          GPUBufferUsage.UNIFORM,
          "config",
        ),
      );
      this.#hyperStride = Math.ceil(16 * this.paramGroups.length / 256) * 256;
      this.stepBuffer = this.own(device.createBuffer({
        label: "microadam step",
        size: STEP_HEADER_BYTES + this.#hyperStride,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
          GPUBufferUsage.COPY_DST,
      }));
      this.#hyperRing = this.own(device.createBuffer({
        label: "microadam hyperparameter ring",
        size: HYPER_SLOTS * this.#hyperStride,
        usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      }));
      this.flagsBuffer = this.own(createFilled(
        device,
        new Uint32Array([NO_BAD_TENSOR, 0, 0, 0]),
        GPUBufferUsage.STORAGE,
        "microadam flags",
      ));
      this.#prologueGroup = device.createBindGroup({
        layout: this.pipeline("prologue").getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: this.configBuffer } },
          { binding: 1, resource: { buffer: this.stepBuffer } },
          { binding: 2, resource: { buffer: this.flagsBuffer } },
        ],
      });
    } catch (e) {
      this.abandonConstruction();
      throw e;
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

  /** The state-shaping configuration a checkpoint must match. */
  protected abstract stateConfig(): Record<string, ConfigValue>;

  /** Byte ranges of tensor `i`'s state buffers, in the checkpoint layout. */
  protected abstract tensorStateRanges(
    i: number,
  ): Record<string, BufferRange[]>;

  /**
   * Extra checks of a state dict beyond sizes and config; throw
   * {@link CheckpointError}. Nothing is loaded yet when it runs.
   */
  protected validateState(_state: OptimizerState): void {}

  /** Encodes the optimizer's own kernels (with {@link GpuOptimizer.dispatch}), after the prologue. */
  protected abstract encodeKernels(): void;

  /**
   * Closes the error scopes opened by the base constructor; the last call of
   * every subclass constructor. A GPU error there (out of memory, an invalid
   * binding) makes `step()`, `status()` and `stateDict()` throw it.
   */
  protected finishConstruction(): void {
    const validation = this.device.popErrorScope();
    const memory = this.device.popErrorScope();
    this.#construction = Promise.all([validation, memory]).then(
      ([v, m]) => {
        const e = m ?? v;
        if (e) {
          this.#constructionError = new GpuUnavailableError(
            `${this.#kind}: the GPU refused the optimizer's buffers or pipelines (${
              m ? "out of memory" : "validation"
            }): ${e.message}`,
          );
        }
      },
      () => {/* device lost: reported by #assertUsable */},
    );
  }

  /** Undoes a constructor that threw: closes the error scopes, frees buffers. */
  protected abandonConstruction(): void {
    this.device.popErrorScope().catch(() => {});
    this.device.popErrorScope().catch(() => {});
    for (const b of this.#owned) b.destroy();
    this.#disposed = true;
  }

  /** Registers a buffer to destroy on dispose. */
  protected own(buffer: GPUBuffer, state = false): GPUBuffer {
    this.#owned.push(buffer);
    if (state) this.#stateBuffers.add(buffer);
    return buffer;
  }

  /** Creates a zeroed state buffer (counted by {@link stateBytes}). */
  protected stateBuffer(label: string, bytes: number): GPUBuffer {
    return this.own(
      this.device.createBuffer({
        label,
        size: Math.max(4, Math.ceil(bytes / 4) * 4),
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
          GPUBufferUsage.COPY_DST,
      }),
      true,
    );
  }

  /** The cached pipeline for a kernel with this optimizer's dtype. */
  protected pipeline(name: KernelName, bf16 = false): GPUComputePipeline {
    return pipeline(this.device, name, bf16 ? { BF16: 1 } : {});
  }

  /**
   * Builds each dispatch group's segment table (fields from `extra`) and the
   * non-finite check for its gradients. Call once from the subclass constructor.
   */
  protected planGroups(
    extra: (group: number, segment: number) => Partial<SegmentFields>,
    bf16 = false,
  ): PlannedGroup[] {
    const check = this.pipeline("checkFinite", bf16);
    return this.plan.groups.map((g, gi) => {
      const { words, blocks, tiles } = segmentTable(
        g.segments.map((s, si) => {
          const t = this.tensors[s.tensor];
          return {
            coordStart: s.coordStart,
            len: s.len,
            d: t.length,
            paramOff: s.paramOff,
            gradOff: s.gradOff,
            group: t.group,
            tensor: t.index,
            ...extra(gi, si),
          };
        }),
      );
      const table = this.own(
        createFilled(this.device, words, GPUBufferUsage.STORAGE, "segments"),
      );
      const params = {
        buffer: g.params.buffer,
        offset: g.params.offset,
        size: g.params.size,
      };
      const grads = {
        buffer: g.grads.buffer,
        offset: g.grads.offset,
        size: g.grads.size,
      };
      this.#checkGroups.push({
        tiles,
        bindGroup: this.device.createBindGroup({
          layout: check.getBindGroupLayout(0),
          entries: [
            { binding: 0, resource: { buffer: table } },
            { binding: 1, resource: grads },
            { binding: 2, resource: { buffer: this.flagsBuffer } },
          ],
        }),
      });
      return { params, grads, table, blocks, tiles };
    });
  }

  /**
   * Dispatches `count` workgroups (folded into 2D past the per-dimension
   * limit) into the step's compute pass; `label` names it in profiles.
   */
  protected dispatch(
    pipe: GPUComputePipeline,
    bindGroup: GPUBindGroup,
    count: number,
    label: string,
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
    pass.setBindGroup(0, bindGroup);
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
   * step and leaves the state exactly as it was.
   *
   * Throws {@link NonFiniteGradientError} (policy `"error"`) once an earlier
   * step has been found non-finite, and {@link GpuUnavailableError} after the
   * device was lost.
   */
  step(options: StepOptions = {}): void {
    this.#assertUsable();
    if (this.#constructionError) throw this.#constructionError;
    if (this.#pendingError) {
      const e = this.#pendingError;
      this.#pendingError = undefined;
      throw e;
    }
    this.#assertSameTensors();
    const call = this.#calls + 1;
    const hyper = new Float32Array(this.#hyperStride / 4);
    this.paramGroups.forEach((g, i) => {
      const { lr, weightDecay } = groupHyper(g, call, i);
      hyper.set([lr, weightDecay, 1 - lr * weightDecay, -lr], 4 * i);
    });
    const slot = ((call - 1) % HYPER_SLOTS) * this.#hyperStride;
    this.device.queue.writeBuffer(this.#hyperRing, slot, hyper);
    const enc = options.encoder ??
      this.device.createCommandEncoder({ label: `${this.#kind} step` });
    enc.copyBufferToBuffer(
      this.#hyperRing,
      slot,
      this.stepBuffer,
      STEP_HEADER_BYTES,
      this.#hyperStride,
    );
    for (const g of this.plan.groups) {
      for (const c of g.gather ?? []) {
        enc.copyBufferToBuffer(
          c.grad,
          c.gradOffset,
          g.grads.buffer,
          c.arenaOffset,
          c.bytes,
        );
        enc.copyBufferToBuffer(
          c.param,
          c.paramOffset,
          g.params.buffer,
          c.arenaOffset,
          c.bytes,
        );
      }
    }
    const pass = options.profile ? undefined : enc.beginComputePass({
      label: `${this.#kind} step`,
      timestampWrites: options.timestampWrites,
    });
    this.#encoding = { encoder: enc, pass, profile: options.profile };
    try {
      const check = this.pipeline("checkFinite", this.#bpe === 2);
      for (const c of this.#checkGroups) {
        this.dispatch(check, c.bindGroup, c.tiles, "check_finite");
      }
      this.dispatch(
        this.pipeline("prologue"),
        this.#prologueGroup,
        1,
        "prologue",
      );
      this.encodeKernels();
    } finally {
      pass?.end();
      this.#encoding = undefined;
    }
    for (const g of this.plan.groups) {
      for (const c of g.gather ?? []) {
        enc.copyBufferToBuffer(
          g.params.buffer,
          c.arenaOffset,
          c.param,
          c.paramOffset,
          c.bytes,
        );
      }
    }
    let staging: GPUBuffer | undefined;
    if (this.nonFinite === "error") {
      staging = this.#stagingPool.pop() ?? this.own(this.device.createBuffer({
        label: "microadam step readback",
        size: 32,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      }));
      enc.copyBufferToBuffer(this.stepBuffer, 0, staging, 0, 32);
    }
    this.#calls = call;
    if (options.encoder) {
      if (staging) this.#unsubmitted.push({ staging, call });
      return;
    }
    this.device.queue.submit([enc.finish()]);
    if (staging) this.#watch(staging, call);
  }

  // Reads a step's skip flag asynchronously; a skip becomes the pending error.
  #watch(staging: GPUBuffer, call: number): void {
    const done = staging.mapAsync(GPUMapMode.READ).then(() => {
      const w = new Uint32Array(staging.getMappedRange(0, 32).slice(0));
      staging.unmap();
      this.#stagingPool.push(staging);
      if (w[0] === 1 && !this.#pendingError) {
        const t = this.tensors[w[5] - 1];
        this.#pendingError = new NonFiniteGradientError(t?.name ?? "?", call);
      }
    }, () => {/* device lost or destroyed: reported by #assertUsable */});
    this.#inFlight.add(done);
    done.finally(() => this.#inFlight.delete(done));
  }

  /**
   * Counters read back from the GPU (one small readback; call it when you
   * need them, not every step). With policy `"error"` it throws the
   * {@link NonFiniteGradientError} of a skipped step not yet reported.
   * With `step({ encoder })`, submit the encoder before calling this.
   */
  async status(): Promise<GpuOptimizerStatus> {
    this.#assertUsable();
    await this.#construction;
    if (this.#constructionError) throw this.#constructionError;
    for (const u of this.#unsubmitted.splice(0)) this.#watch(u.staging, u.call);
    await Promise.all([...this.#inFlight]);
    const [bytes] = await readRanges(this.device, [{
      buffer: this.stepBuffer,
      offset: 0,
      size: 32,
    }]);
    if (this.#pendingError) {
      const e = this.#pendingError;
      this.#pendingError = undefined;
      throw e;
    }
    const w = new Uint32Array(bytes.buffer);
    return {
      step: w[1],
      calls: this.#calls,
      skipped: w[4],
      lastNonFiniteTensor: w[5] ? this.tensors[w[5] - 1]?.name : undefined,
    };
  }

  /** Exact bytes of optimizer state allocated on the device (what a checkpoint holds per tensor). */
  stateBytes(): number {
    this.#assertNotDisposed();
    let n = 0;
    for (const b of this.#stateBuffers) n += b.size;
    return n;
  }

  /**
   * Device memory this optimizer allocated: `state` as in {@link stateBytes},
   * `workspace` for everything else (scratch, tables, gather arenas, scalars).
   */
  memoryBytes(): { state: number; workspace: number } {
    let total = 0;
    for (const b of this.#owned) {
      if (b.usage & GPUBufferUsage.MAP_READ) continue;
      total += b.size;
    }
    const state = this.stateBytes();
    return { state, workspace: total - state };
  }

  /** Reads the whole state back into plain data (see {@link OptimizerState}). */
  async stateDict(): Promise<OptimizerState> {
    this.#assertUsable();
    await this.#construction;
    if (this.#constructionError) throw this.#constructionError;
    const perTensor = this.tensors.map((_, i) => this.tensorStateRanges(i));
    const ranges: BufferRange[] = [{
      buffer: this.stepBuffer,
      offset: 0,
      size: 32,
    }];
    for (const r of perTensor) {
      for (const list of Object.values(r)) ranges.push(...list);
    }
    const bytes = await readRanges(this.device, ranges);
    const header = new Uint32Array(bytes[0].buffer);
    let next = 1;
    return {
      optimizer: this.#kind,
      config: this.stateConfig(),
      step: header[1],
      calls: this.#calls,
      skipped: header[4],
      ring: header[3],
      tensors: perTensor.map((r, i) => ({
        name: this.tensors[i].name,
        length: this.tensors[i].length,
        buffers: Object.fromEntries(
          Object.entries(r).map(([key, list]) => {
            const parts = bytes.slice(next, next += list.length);
            const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
            let at = 0;
            for (const p of parts) {
              out.set(p, at);
              at += p.length;
            }
            return [key, out];
          }),
        ),
      })),
    };
  }

  /**
   * Replaces the state with `state` (from {@link stateDict}, a checkpoint, or
   * a CPU optimizer of the same kind and config). A state that does not fit
   * throws {@link CheckpointError} and changes nothing.
   */
  loadStateDict(state: OptimizerState): void {
    this.#assertUsable();
    const perTensor = this.tensors.map((_, i) => this.tensorStateRanges(i));
    assertStateMatches(state, {
      optimizer: this.#kind,
      config: this.stateConfig(),
      tensors: perTensor.map((r, i) => ({
        length: this.tensors[i].length,
        buffers: Object.fromEntries(
          Object.entries(r).map((
            [k, list],
          ) => [k, list.reduce((s, x) => s + x.size, 0)]),
        ),
      })),
    });
    for (const key of ["step", "skipped"] as const) {
      if (state[key] > 0xffffffff) {
        throw new CheckpointError(
          `${key}: the GPU keeps it as a u32, got ${state[key]}`,
        );
      }
    }
    this.validateState(state);
    const q = this.device.queue;
    perTensor.forEach((r, i) => {
      for (const [key, list] of Object.entries(r)) {
        const data = state.tensors[i].buffers[key];
        let at = 0;
        for (const range of list) {
          const copy = data.slice(at, at + range.size);
          at += range.size;
          q.writeBuffer(range.buffer, range.offset, copy);
        }
      }
    });
    q.writeBuffer(
      this.stepBuffer,
      0,
      new Uint32Array([0, state.step, 0, state.ring, state.skipped, 0, 0, 0]),
    );
    q.writeBuffer(this.flagsBuffer, 0, new Uint32Array([NO_BAD_TENSOR]));
    this.#calls = state.calls;
    this.#pendingError = undefined;
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
    if (this.#disposed) return;
    this.#disposed = true;
    for (const b of this.#owned) b.destroy();
  }

  /** Same as {@link dispose}, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  // The dispatch plan was made for the tensors given at construction.
  #assertSameTensors(): void {
    let i = 0;
    this.paramGroups.forEach((g, gi) => {
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

  #assertNotDisposed(): void {
    if (this.#disposed) {
      throw new Error(
        `${this.#kind}: this optimizer has been disposed; create a new one`,
      );
    }
  }

  #assertUsable(): void {
    if (this.#disposed) {
      throw new Error(
        `${this.#kind}: this optimizer has been disposed; create a new one`,
      );
    }
    if (this.#lost !== undefined) {
      throw new GpuUnavailableError(
        `${this.#kind}: the GPU device was lost (${this.#lost}); request a new device, rebuild the optimizer and load the last checkpoint`,
      );
    }
  }
}
