/**
 * MicroAdam on WebGPU: Adam whose state is a window of the last m sparse
 * (top-k) gradients plus a 4-bit error feedback, about 0.9 byte per
 * parameter instead of Adam's 8. Parameters and gradients are f32, or bf16
 * packed two per u32.
 *
 * @module
 */

import { InvalidOptionError } from "../errors.ts";
import type { BufferRange } from "../gpu/buffers.ts";
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
  type PlannedBatch,
} from "./gpu_optimizer.ts";
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

interface BatchState {
  planned: PlannedBatch;
  window: GPUBuffer;
  codes: GPUBuffer;
  select: GPUBindGroup;
  update: GPUBindGroup;
  /** Per segment: byte offsets of its window and codes. */
  offsets: {
    window: number;
    windowBytes: number;
    codes: number;
    codeBytes: number;
  }[];
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
        4 * Math.ceil(len / 8),
      ],
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
      if (8 * ef > device.limits.maxStorageBufferBindingSize) {
        throw new InvalidOptionError(
          `efBlockSize ${o.efBlockSize} gives ${ef} EF blocks, whose ${
            8 * ef
          }-byte scratch exceeds the device's storage binding limit; use a larger efBlockSize`,
        );
      }
      this.#stats = this.stateBuffer("microadam EF stats", 4 * ef);
      const scratch = this.own(device.createBuffer({
        label: "microadam EF stats scratch",
        size: Math.max(8 * ef, 4),
        usage: GPUBufferUsage.STORAGE,
      }));

      // State offsets of each segment inside its group's arenas.
      const layouts = this.plan.batches.map((b) => {
        let window = 0;
        let codes = 0;
        return b.segments.map((s) => {
          const geom = this.geometry[s.tensor];
          const entry = {
            window,
            windowBytes: 4 * windowEntries(geom, s.coordStart, s.len),
            codes,
            codeBytes: 4 * Math.ceil(s.len / 8),
          };
          window += entry.windowBytes;
          codes += entry.codeBytes;
          return entry;
        });
      });
      const planned = this.planBatches((bi, si) => {
        const s = this.plan.batches[bi].segments[si];
        const geom = this.geometry[s.tensor];
        return {
          codesOff: layouts[bi][si].codes / 4,
          windowOff: layouts[bi][si].window / 4,
          statsOff: this.#statsOffset[s.tensor],
          block: geom.blockSize,
          kBlock: geom.kBlock,
          kTail: geom.kTail,
        };
      }, bf16);
      const selectPipe = this.pipeline("microadamSelect", bf16);
      const updatePipe = this.pipeline("microadamUpdate", bf16);
      this.#batches = planned.map((p, bi) => {
        const offsets = layouts[bi];
        const last = offsets[offsets.length - 1];
        const window = this.stateBuffer(
          "microadam window",
          last.window + last.windowBytes,
        );
        const codes = this.stateBuffer(
          "microadam EF codes",
          last.codes + last.codeBytes,
        );
        const common = {
          cfg: { buffer: this.scalars.config },
          step: { buffer: this.scalars.step },
          table: { buffer: p.table },
        };
        return {
          planned: p,
          window,
          codes,
          offsets,
          select: device.createBindGroup({
            layout: selectPipe.getBindGroupLayout(0),
            entries: [
              { binding: 0, resource: common.cfg },
              { binding: 1, resource: common.step },
              { binding: 2, resource: common.table },
              { binding: 3, resource: p.grads },
              { binding: 4, resource: { buffer: codes } },
              { binding: 5, resource: { buffer: this.#stats } },
              { binding: 6, resource: { buffer: scratch } },
              { binding: 7, resource: { buffer: window } },
            ],
          }),
          update: device.createBindGroup({
            layout: updatePipe.getBindGroupLayout(0),
            entries: [
              { binding: 0, resource: common.cfg },
              { binding: 1, resource: common.step },
              { binding: 2, resource: common.table },
              { binding: 3, resource: p.params },
              { binding: 4, resource: p.grads },
              { binding: 5, resource: { buffer: codes } },
              { binding: 6, resource: { buffer: this.#stats } },
              { binding: 7, resource: { buffer: scratch } },
              { binding: 8, resource: { buffer: window } },
            ],
          }),
        };
      });
      this.#commit = device.createBindGroup({
        layout: this.pipeline("microadamCommit").getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: this.scalars.step } },
          { binding: 1, resource: { buffer: this.#stats } },
          { binding: 2, resource: { buffer: scratch } },
        ],
      });
    } catch (e) {
      throw this.abandonConstruction(e);
    }
    this.finishConstruction();
  }

  /** Ring position and window indices (shared with the CPU reference). */
  protected override validateState(state: OptimizerState): void {
    checkMicroAdamState(state, this.geometry);
  }

  /** Every option that shapes the state. */
  protected stateConfig(): Record<string, ConfigValue> {
    return microAdamStateConfig(this.options);
  }

  /** Tensor `i`'s window, codes and stats, chunk by chunk in coordinate order. */
  protected tensorStateRanges(i: number): TensorStateRanges {
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
          w: { buffer: st.window, offset: o.window, size: o.windowBytes },
          c: { buffer: st.codes, offset: o.codes, size: o.codeBytes },
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

  /** Select (per top-k block), update (per tile), then commit the EF statistics. */
  protected encodeKernels(): void {
    const bf16 = this.options.dtype === "bf16";
    const select = this.pipeline("microadamSelect", bf16);
    for (const b of this.#batches) {
      this.dispatch(select, b.select, b.planned.blocks, "microadam_select");
    }
    const update = this.pipeline("microadamUpdate", bf16);
    for (const b of this.#batches) {
      this.dispatch(update, b.update, b.planned.tiles, "microadam_update");
    }
    this.dispatch(
      this.pipeline("microadamCommit"),
      this.#commit,
      Math.ceil(this.#efBlocks / 256),
      "microadam_commit",
    );
  }
}
