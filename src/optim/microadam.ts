/**
 * MicroAdam on WebGPU: Adam whose state is a window of the last m sparse
 * (top-k) gradients plus a 4-bit error feedback, about 0.9 byte per
 * parameter instead of Adam's 8. Parameters and gradients are f32, or bf16
 * packed two per u32.
 *
 * @module
 */

import { InvalidOptionError } from "../errors.ts";
import type { TensorStateRanges } from "./state_io.ts";
import type { GpuTensor } from "../gpu/tensors.ts";
import {
  blockK,
  type MicroAdamGeometry,
  microAdamGeometry,
} from "../core/geometry.ts";
import { checkMicroAdamState } from "../core/state_checks.ts";
import type { ParamGroupSpec } from "../core/groups.ts";
import {
  type MicroAdamOptions,
  microAdamStateConfig,
  type ResolvedMicroAdamOptions,
  resolveMicroAdamOptions,
} from "../core/options.ts";
import {
  GpuOptimizer,
  PLACEMENT_KEYS,
  type PlacementOptions,
} from "./gpu_optimizer.ts";
import {
  bindBuffers,
  type BufferRange,
  createFilled,
  readRanges,
} from "../gpu/buffers.ts";
import { fastLanes } from "../gpu/kernels.ts";
import type { Batch } from "../gpu/plan.ts";
import { type SegmentFields, segmentTable } from "../gpu/segments.ts";
import {
  FAST_BLOCK,
  FAST_K,
  FAST_WINDOW,
  FAST_WINDOW_ENTRIES,
  fastGrid,
} from "../gpu/layout.ts";
import type { ConfigValue, OptimizerState } from "../core/state.ts";

/** Window entries of the blocks covering tensor range [start, start + len). */
function windowEntries(
  g: MicroAdamGeometry,
  start: number,
  len: number,
): number {
  let n = 0;
  const end = start + len;
  for (let b = Math.floor(start / g.blockSize); b * g.blockSize < end; b++) {
    n += blockK(g, b);
  }
  return n * g.window;
}

const gcd = (a: number, b: number): number => b ? gcd(b, a % b) : a;

/**
 * Whether a tensor of geometry `g` takes the one-pass kernels
 * (`microadam_select_fast`, `microadam_update_fast`): each top-k block is
 * exactly one EF block (Q = D, or the whole tensor fits one of each), a block
 * fits one workgroup's registers and starts on a code word, and its window
 * (m · k entries) fits the update's workgroup memory (the limits are in
 * src/gpu/layout.ts). Every other
 * tensor takes the general kernels; both give the same bits.
 *
 * @example
 * ```ts
 * import { microAdamGeometry } from "../core/geometry.ts";
 * import { fastPath } from "./microadam.ts";
 * const shape = { window: 10, density: 0.01, topkBlockSize: 4096, efBlockSize: 4096 };
 * console.log(fastPath(microAdamGeometry(1 << 20, shape))); // true
 * console.log(fastPath(microAdamGeometry(1 << 20, { ...shape, efBlockSize: 64 }))); // false
 * ```
 */
export function fastPath(g: MicroAdamGeometry): boolean {
  const oneEfBlock = g.blocks === 1
    ? g.length <= g.efBlockSize
    : g.efBlockSize === g.blockSize && g.blockSize % 8 === 0;
  return oneEfBlock && g.blockSize <= FAST_BLOCK && g.kBlock <= FAST_K &&
    g.window <= FAST_WINDOW && g.window * g.kBlock <= FAST_WINDOW_ENTRIES;
}

/**
 * Elements above which a batch of one-pass tensors keeps its own dispatches
 * instead of sharing them as a lane (`laneBelow` in src/gpu/plan.ts): the
 * LLaMA-2 shapes' matrices (16.8 M to 131 M elements) share; on the H200,
 * binding-sized batches sharing made the step slower.
 */
const LANE_BELOW = 2 ** 27;

/**
 * Binding pairs a bf16 batch merges (f32: `fastLanes`). The H200's driver
 * compiles the bf16 select kernel with 2 lanes to 48 registers, as without
 * lanes (it keeps 20 bytes per thread in workgroup memory), but with 3 or 4
 * to 61, one resident workgroup fewer per multiprocessor: LLaMA-2-7B bf16
 * 1.4 % faster with 2 than with 4, 0.8 % slower with 3 (bench/RESULTS.md,
 * round 23).
 *
 * @example
 * ```ts
 * import { fastLanes } from "../gpu/kernels.ts";
 * import { requestDevice } from "../gpu/device.ts";
 * import { BF16_LANES } from "./microadam.ts";
 * const device = await requestDevice();
 * console.log(Math.min(BF16_LANES, fastLanes(device)) <= 2); // true
 * device.destroy();
 * ```
 */
export const BF16_LANES = 2;

/** One segment table and the bind groups of the kernels that walk it. */
interface Path {
  blocks: number;
  tiles: number;
  select: Kernel;
  update: Kernel;
}

/** A stage's pipeline (one-pass: with the batch's lanes) and its bindings. */
interface Kernel {
  pipe: GPUComputePipeline;
  bindGroup: GPUBindGroup;
}

interface BatchState {
  /** Segments of one-pass tensors. */
  fast?: Path;
  /** Segments of the others. */
  general?: Path;
  window: BufferRange;
  /** Two halves of `codesHalf` bytes: see kernels/microadam_common.wgsl. */
  codes: BufferRange;
  codesHalf: number;
  /** Per segment: byte offsets of its window and codes (within a half). */
  offsets: {
    window: number;
    windowBytes: number;
    codes: number;
    codeBytes: number;
  }[];
}

/** Where each MicroAdam keeps its selection hints (see readSelectionHints). */
const SELECTION_HINTS = new WeakMap<MicroAdam, BufferRange>();

/**
 * The one-pass select kernel's selection hints of `opt`, read back: one word
 * per EF block, in optimizer order, each the f32 bits of an |a| at which the
 * block's candidates are marked first at the next step (0: none yet).
 * kernels/microadam_select_fast.wgsl says how a step writes them. They are
 * workspace, not state: for tests that check what the kernel keeps there.
 *
 * @example
 * ```ts
 * import { MicroAdam, readSelectionHints } from "./microadam.ts";
 * import { requestDevice } from "../gpu/device.ts";
 * const device = await requestDevice();
 * const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
 * const param = device.createBuffer({ size: 4 * 4096, usage });
 * const grad = device.createBuffer({ size: 4 * 4096, usage });
 * device.queue.writeBuffer(grad, 0, new Float32Array(4096).map((_, j) => Math.sin(j)));
 * const opt = new MicroAdam(device, [{ param, grad, length: 4096 }], { lr: 1e-3 });
 * console.log(Array.from(await readSelectionHints(opt))); // [ 0, 0 ]
 * opt.step();
 * console.log((await readSelectionHints(opt))[0] > 0); // true
 * opt.dispose();
 * device.destroy();
 * ```
 *
 * @param opt The optimizer.
 * @returns One word per EF block.
 */
export async function readSelectionHints(opt: MicroAdam): Promise<Uint32Array> {
  const hints = SELECTION_HINTS.get(opt);
  if (!hints) {
    throw new Error("readSelectionHints: this MicroAdam has no hints");
  }
  const [bytes] = await readRanges(opt.device, [hints]);
  return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

/**
 * MicroAdam (Modoranu et al., NeurIPS 2024) over WebGPU.
 *
 * @example
 * ```ts
 * import { MicroAdam, requestDevice } from "../../mod.ts";
 * const device = await requestDevice();
 * const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
 * const param = device.createBuffer({ size: 4 * 1000, usage });
 * const grad = device.createBuffer({ size: 4 * 1000, usage });
 * device.queue.writeBuffer(grad, 0, new Float32Array(1000).fill(0.5));
 * const opt = new MicroAdam(device, [{ param, grad, length: 1000, name: "w" }], { lr: 1e-3 });
 * opt.step();
 * console.log((await opt.status()).step); // 1
 * opt.dispose();
 * device.destroy();
 * ```
 */
export class MicroAdam extends GpuOptimizer {
  /** Resolved options. */
  readonly options: ResolvedMicroAdamOptions;
  /** Per-tensor block structure (sizes of the state), in optimizer order. */
  readonly geometry: readonly MicroAdamGeometry[];
  readonly #batches: BatchState[];
  readonly #stats: GPUBuffer;
  readonly #statsOffset: number[];
  readonly #commit: GPUBindGroup;
  readonly #efBlocks: number;
  readonly #codesStateBytes: number;

  /**
   * Allocates the compressed state (zero) and plans the dispatches.
   *
   * @param device The device owning the tensors' buffers.
   * @param params Tensors, or param groups with their own `lr`, `weightDecay`, `schedule`.
   * @param options Hyperparameters (authors' defaults) and placement options.
   */
  constructor(
    device: GPUDevice,
    params: readonly (GpuTensor | ParamGroupSpec<GpuTensor>)[],
    options: MicroAdamOptions & PlacementOptions = {},
  ) {
    const o = resolveMicroAdamOptions(options, PLACEMENT_KEYS);
    const shape = {
      window: o.window,
      density: o.density,
      topkBlockSize: o.topkBlockSize,
      efBlockSize: o.efBlockSize,
    };
    const geo = (length: number) => microAdamGeometry(length, shape);
    const lanes = (d: GPUDevice) =>
      o.dtype === "bf16" ? Math.min(BF16_LANES, fastLanes(d)) : fastLanes(d);
    super(device, params, {
      name: "MicroAdam",
      bytesPerElement: o.dtype === "bf16" ? 2 : 4,
      defaults: { lr: o.lr, weightDecay: o.weightDecay, schedule: o.schedule },
      nonFinite: o.nonFinite,
      decoupledDecay: true,
      kernel: {
        kind: 1,
        beta1: o.betas[0],
        beta2: o.betas[1],
        eps: o.eps,
        window: o.window,
        efBlock: o.efBlockSize,
      },
      // Chunks end on top-k block and code-word boundaries.
      chunkUnit: (t) => {
        const b = geo(t.length).blockSize;
        return b * 8 / gcd(b, 8);
      },
      segmentStateBytes: (t, start, len) => [
        4 * windowEntries(geo(t.length), start, len),
        // Both codes halves live in one binding.
        8 * Math.ceil(len / 8),
      ],
      // Tensors of the one-pass kernels in buffers of their own share
      // dispatches, one binding pair each, where a dispatch of their own
      // would leave the GPU idle for a noticeable part of it.
      lanes,
      laneable: (t) => fastPath(geo(t.length)),
      laneBelow: LANE_BELOW,
    }, options);
    this.options = o;
    try {
      const bf16 = o.dtype === "bf16";
      this.geometry = this.tensors.map((t) => geo(t.length));
      this.#statsOffset = [];
      let ef = 0;
      for (const g of this.geometry) {
        this.#statsOffset.push(ef);
        ef += g.efBlocks;
      }
      this.#efBlocks = ef;
      this.#stats = this.stateBuffer("microadam EF stats", 4 * ef);

      // `work`: the EF statistics keys of a step (2 words per EF block),
      // every segment's staged window row, then the selection hints.
      let workWords = 2 * ef;
      const stageOff = this.plan.batches.map((b) =>
        b.segments.map((s) => {
          const at = workWords;
          workWords +=
            windowEntries(this.geometry[s.tensor], s.coordStart, s.len) /
            o.window;
          return at;
        })
      );
      // Then one selection hint per EF block (the one-pass select kernel's
      // guess at its block's candidates, from the step before; any value is
      // correct, a good one saves the kernel its bound: see
      // kernels/microadam_select_fast.wgsl).
      const hintOff = workWords;
      workWords += ef;
      if (4 * workWords > device.limits.maxStorageBufferBindingSize) {
        throw new InvalidOptionError(
          `efBlockSize ${o.efBlockSize} gives ${ef} EF blocks, whose ${
            4 * workWords
          }-byte work buffer exceeds the device's storage binding limit; use a larger efBlockSize`,
        );
      }
      const work = this.own(device.createBuffer({
        label: "microadam work (EF keys, staged rows, selection hints)",
        size: Math.max(4 * workWords, 4),
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
      }));
      SELECTION_HINTS.set(this, {
        buffer: work,
        offset: 4 * hintOff,
        size: 4 * ef,
      });
      const stubs: GPUBuffer[] = [];
      const kernel = (
        pipe: GPUComputePipeline,
        entries: (GPUBuffer | GPUBufferBinding)[],
      ): Kernel => ({
        pipe,
        bindGroup: bindBuffers(device, pipe.getBindGroupLayout(0), entries),
      });

      // A batch of one binding pair takes the kernels without lanes: the
      // lanes' switch cost the bf16 select kernel 15 registers (48 -> 63)
      // and 8 % on the H200 (bench/RESULTS.md, round 19).
      const fastLanesOf = (b: Batch) => b.lanes ? lanes(device) : 1;
      const selectPipe = this.pipeline("microadamSelect", bf16);
      const updatePipe = this.pipeline("microadamUpdate", bf16);
      // State offsets of each segment inside its batch's window and codes.
      const layouts = this.plan.batches.map((b) => {
        let windowAt = 0;
        let codesAt = 0;
        const offsets = b.segments.map((s) => {
          const geom = this.geometry[s.tensor];
          const entry = {
            window: windowAt,
            windowBytes: 4 * windowEntries(geom, s.coordStart, s.len),
            codes: codesAt,
            codeBytes: 4 * Math.ceil(s.len / 8),
          };
          windowAt += entry.windowBytes;
          codesAt += entry.codeBytes;
          return entry;
        });
        return { offsets, windowAt, codesAt };
      });
      // Every batch's window, and every batch's codes, in few buffers (see
      // stateRanges); one half of the codes is state, the other workspace.
      const windows = this.stateRanges(
        "microadam window",
        layouts.map((l) => l.windowAt),
      );
      const codeRanges = this.packedRanges(
        "microadam EF codes (two halves)",
        layouts.map((l) => 2 * l.codesAt),
      );
      // One half of each batch's codes counts as state.
      this.#codesStateBytes = layouts.reduce((n, l) => n + l.codesAt, 0);
      this.#batches = this.plan.batches.map((b, bi) => {
        const { offsets, codesAt } = layouts[bi];
        const window = windows[bi];
        const codes = codeRanges[bi];
        const { params, grads } = b;
        // 16-byte buffers for a vec4 view of a smaller binding and for the
        // bindings of lanes a batch does not use: one per lane, as no two
        // writable bindings of a dispatch may share a buffer.
        const stub = (lane = 0) =>
          stubs[lane] ??= this.own(device.createBuffer({
            label: "microadam unused binding",
            size: 16,
            usage: GPUBufferUsage.STORAGE,
          }));
        const vec4View = (g: GPUBufferBinding) =>
          (g.size ?? 0) >= 16 ? g : { buffer: stub() };
        const grads4 = vec4View(grads);
        // Lanes 1.. of the one-pass kernels, the unused ones on the stub.
        const laneCount = fastLanesOf(b);
        const lanes = Array.from(
          { length: laneCount - 1 },
          (_, l) => b.lanes?.[l],
        );
        const selectFast = this.pipeline(
          "microadamSelectFast",
          bf16,
          laneCount,
        );
        const updateFast = this.pipeline(
          "microadamUpdateFast",
          bf16,
          laneCount,
        );
        const segs = b.segments.map(
          (s, si): SegmentFields & { fast: boolean } => {
            const geom = this.geometry[s.tensor];
            return {
              fast: fastPath(geom),
              ...this.segmentFields(s),
              codesOff: offsets[si].codes / 4,
              windowOff: offsets[si].window / 4,
              statsOff: this.#statsOffset[s.tensor],
              block: geom.blockSize,
              kBlock: geom.kBlock,
              kTail: geom.kTail,
              stageOff: stageOff[bi][si],
            };
          },
        );
        const table = (list: SegmentFields[]) => {
          const t = segmentTable(list, hintOff);
          return {
            ...t,
            buffer: this.own(createFilled(
              device,
              t.words,
              GPUBufferUsage.STORAGE,
              "microadam segments",
            )),
          };
        };
        const state: BatchState = {
          window,
          codes,
          codesHalf: codesAt,
          offsets,
        };
        const fastSegs = segs.filter((s) => s.fast);
        if (fastSegs.length) {
          const t = table(fastSegs);
          // Bindings 0-2 of every MicroAdam kernel: config, step, segments.
          const head = [this.scalars.config, this.scalars.step, t.buffer];
          state.fast = {
            blocks: t.blocks,
            tiles: t.tiles,
            select: kernel(selectFast, [
              ...head,
              grads,
              grads4,
              codes,
              this.#stats,
              work,
              this.scalars.flags,
              ...lanes.flatMap((l): (GPUBuffer | GPUBufferBinding)[] =>
                l ? [l.grads, vec4View(l.grads)] : [stub(), stub()]
              ),
            ]),
            update: kernel(updateFast, [
              ...head,
              params,
              window,
              work,
              codes,
              ...lanes.map((l, i) => l ? l.params : stub(i + 1)),
            ]),
          };
        }
        const generalSegs = segs.filter((s) => !s.fast);
        if (generalSegs.length) {
          const t = table(generalSegs);
          const head = [this.scalars.config, this.scalars.step, t.buffer];
          state.general = {
            blocks: t.blocks,
            tiles: t.tiles,
            select: kernel(selectPipe, [
              ...head,
              grads,
              codes,
              this.#stats,
              work,
              this.scalars.flags,
            ]),
            update: kernel(updatePipe, [
              ...head,
              params,
              grads,
              codes,
              this.#stats,
              work,
              window,
            ]),
          };
        }
        return state;
      });
      this.#commit = bindBuffers(
        device,
        this.pipeline("microadamCommit").getBindGroupLayout(0),
        [this.scalars.step, this.#stats, work],
      );
    } catch (e) {
      throw this.abandonConstruction(e);
    }
    this.finishConstruction();
  }

  /**
   * Exact bytes of optimizer state: the window, the EF statistics and one
   * half of the double-buffered EF codes (the other half is workspace).
   */
  override stateBytes(): number {
    return super.stateBytes() + this.#codesStateBytes;
  }

  /** Ring position and window indices (shared with the CPU reference). */
  protected override validateState(state: OptimizerState): void {
    checkMicroAdamState(state, this.geometry);
  }

  /** Every option that shapes the state. */
  protected stateConfig(): Record<string, ConfigValue> {
    return microAdamStateConfig(this.options);
  }

  /**
   * Tensor `i`'s window, codes and stats, chunk by chunk in coordinate order;
   * the codes from the half that `calls` executed step calls make current.
   */
  protected tensorStateRanges(i: number, calls: number): TensorStateRanges {
    // After the GPU has executed call n the current codes are in half n mod 2.
    const parity = calls % 2;
    const window: BufferRange[] = [];
    const codes: BufferRange[] = [];
    const pieces: { start: number; w: BufferRange; c: BufferRange }[] = [];
    this.plan.batches.forEach((b, bi) =>
      b.segments.forEach((s, si) => {
        if (s.tensor !== i) return;
        const st = this.#batches[bi];
        const o = st.offsets[si];
        pieces.push({
          start: s.coordStart,
          w: {
            buffer: st.window.buffer,
            offset: st.window.offset + o.window,
            size: o.windowBytes,
          },
          c: {
            buffer: st.codes.buffer,
            offset: st.codes.offset + parity * st.codesHalf + o.codes,
            size: o.codeBytes,
          },
        });
      })
    );
    pieces.sort((a, b) => a.start - b.start);
    for (const p of pieces) {
      window.push(p.w);
      codes.push(p.c);
    }
    return {
      window,
      codes,
      stats: [{
        buffer: this.#stats,
        offset: 4 * this.#statsOffset[i],
        size: 4 * this.geometry[i].efBlocks,
      }],
    };
  }

  /**
   * The select kernels, before the prologue: they read every gradient
   * anyway and flag a non-finite one there; what they write (staged rows,
   * EF keys, the other codes half) is only committed by an applied step.
   * A caller's found-inf flag changes nothing here: the check costs nothing,
   * and the prologue honours the flag too.
   */
  protected override encodeNonFiniteCheck(): void {
    this.#encodeBlockKernels("select");
  }

  /** The update kernels (per block or per tile), then the EF statistics. */
  protected encodeKernels(): void {
    this.#encodeBlockKernels("update");
    this.dispatch(
      this.pipeline("microadamCommit"),
      this.#commit,
      Math.ceil(this.#efBlocks / 256),
      "microadam_commit",
    );
  }

  // One stage's kernels over every batch: the one-pass kernel on fastGrid's
  // workgroups (each walks several blocks), the general one per block
  // (select) or per tile (update).
  #encodeBlockKernels(stage: "select" | "update"): void {
    for (const b of this.#batches) {
      if (b.fast) {
        const k = b.fast[stage];
        this.dispatch(
          k.pipe,
          k.bindGroup,
          fastGrid(stage, b.fast.blocks, this.options.dtype),
          `microadam_${stage}_fast`,
        );
      }
      if (b.general) {
        const k = b.general[stage];
        this.dispatch(
          k.pipe,
          k.bindGroup,
          stage === "select" ? b.general.blocks : b.general.tiles,
          `microadam_${stage}`,
        );
      }
    }
  }
}
