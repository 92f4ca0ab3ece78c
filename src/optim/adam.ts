/**
 * Adam, AdamW and AMSGrad on WebGPU (f32), the dense baselines MicroAdam is
 * measured against: 8 bytes of state per parameter (12 with AMSGrad).
 *
 * @module
 */

import { bindBuffers, type BufferRange } from "../gpu/buffers.ts";
import type { TensorStateRanges } from "./state_io.ts";
import type { GpuTensor } from "../gpu/tensors.ts";
import type { ParamGroupSpec } from "../core/groups.ts";
import {
  ADAM_KEYS,
  type AdamOptions,
  ADAMW_KEYS,
  AMSGRAD_KEYS,
  resolveAdamOptions,
  type ResolvedAdamOptions,
} from "../core/options.ts";
import {
  GpuOptimizer,
  PLACEMENT_KEYS,
  type PlacementOptions,
} from "./gpu_optimizer.ts";
import { pipeline } from "../gpu/kernels.ts";
import { vec4Aligned } from "../gpu/plan.ts";
import type { ConfigValue, OptimizerState } from "../core/state.ts";
import { checkAdamState } from "../core/state_checks.ts";

const MOMENTS = ["expAvg", "expAvgSq", "maxExpAvgSq"] as const;

/**
 * Adam (Kingma & Ba) over WebGPU, with PyTorch's semantics: L2 weight decay
 * added to the gradient unless `decoupledWeightDecay`, optional AMSGrad.
 *
 * @example
 * ```ts
 * import { Adam, requestDevice } from "../../mod.ts";
 * const device = await requestDevice();
 * const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
 * const param = device.createBuffer({ size: 16, usage });
 * const grad = device.createBuffer({ size: 16, usage });
 * const opt = new Adam(device, [{ param, grad, length: 4 }], { lr: 1e-3 });
 * console.log(opt.stateBytes()); // 32
 * opt.dispose();
 * device.destroy();
 * ```
 */
export class Adam extends GpuOptimizer {
  /** Resolved options. */
  readonly options: ResolvedAdamOptions;
  readonly #batches: {
    pipe: GPUComputePipeline;
    bind: GPUBindGroup;
    tiles: number;
    moments: BufferRange[];
    offsets: number[];
  }[];

  /**
   * Allocates zeroed moments and plans the dispatches.
   *
   * @param device The device owning the tensors' buffers.
   * @param params Tensors or param groups.
   * @param options Hyperparameters and placement options.
   * @param kind Name recorded in checkpoints (set by the subclasses).
   * @param defaults Defaults that differ per subclass.
   * @param keys The options the subclass takes (placement options come on top).
   */
  constructor(
    device: GPUDevice,
    params: readonly (GpuTensor | ParamGroupSpec<GpuTensor>)[],
    options: AdamOptions & PlacementOptions = {},
    kind = "Adam",
    defaults: Pick<
      AdamOptions,
      "weightDecay" | "decoupledWeightDecay" | "amsgrad"
    > = {},
    keys: readonly string[] = ADAM_KEYS,
  ) {
    const o = resolveAdamOptions(
      options,
      defaults,
      [...keys, ...PLACEMENT_KEYS],
      `${kind} options`,
    );
    const states = o.amsgrad ? 3 : 2;
    super(device, params, {
      name: kind,
      bytesPerElement: 4,
      defaults: { lr: o.lr, weightDecay: o.weightDecay, schedule: o.schedule },
      nonFinite: o.nonFinite,
      decoupledDecay: o.decoupledWeightDecay,
      kernel: {
        kind: 0,
        beta1: o.betas[0],
        beta2: o.betas[1],
        eps: o.eps,
        amsgrad: o.amsgrad,
        decoupled: o.decoupledWeightDecay,
      },
      chunkUnit: () => 8,
      segmentStateBytes: (_t, _s, len) => new Array(states).fill(4 * len),
    }, options);
    this.options = o;
    try {
      const offsets = this.plan.batches.map((b) => {
        let at = 0;
        return b.segments.map((s) => (at += s.len) - s.len);
      });
      const planned = this.planBatches((bi, si) => ({
        stateOff: offsets[bi][si],
      }));
      // Variants by pipeline constants rather than runtime switches.
      const constants = {
        AMSGRAD: o.amsgrad ? 1 : 0,
        DECOUPLED: o.decoupledWeightDecay ? 1 : 0,
      };
      const dummy = o.amsgrad ? undefined : this.own(device.createBuffer({
        label: "adam unused max",
        size: 16,
        usage: GPUBufferUsage.STORAGE,
      }));
      // Every batch's moments in few buffers (see stateRanges).
      const all = this.stateRanges(
        "adam moments",
        this.plan.batches.flatMap((b) =>
          new Array(states).fill(4 * b.segments.reduce((s, x) => s + x.len, 0))
        ),
      );
      this.#batches = planned.map((p, bi) => {
        const moments = all.slice(states * bi, states * (bi + 1));
        const pipe = pipeline(
          device,
          vec4Aligned(this.plan.batches[bi].segments) ? "adam4" : "adam",
          constants,
        );
        return {
          pipe,
          tiles: p.tiles,
          moments,
          offsets: offsets[bi],
          bind: bindBuffers(device, pipe.getBindGroupLayout(0), [
            this.scalars.config,
            this.scalars.step,
            p.table,
            p.params,
            p.grads,
            moments[0],
            moments[1],
            moments[2] ?? dummy!,
          ]),
        };
      });
    } catch (e) {
      throw this.abandonConstruction(e);
    }
    this.finishConstruction();
  }

  /** Finite moments, second moments ≥ 0 (shared with the CPU twins). */
  protected override validateState(state: OptimizerState): void {
    checkAdamState(state);
  }

  /** Only `amsgrad` shapes the state. */
  protected stateConfig(): Record<string, ConfigValue> {
    return { amsgrad: this.options.amsgrad };
  }

  /** Tensor `i`'s moments, chunk by chunk in coordinate order. */
  protected tensorStateRanges(i: number, _calls: number): TensorStateRanges {
    const pieces: { start: number; ranges: BufferRange[] }[] = [];
    this.plan.batches.forEach((b, bi) =>
      b.segments.forEach((s, si) => {
        if (s.tensor !== i) return;
        const st = this.#batches[bi];
        pieces.push({
          start: s.coordStart,
          ranges: st.moments.map((r) => ({
            buffer: r.buffer,
            offset: r.offset + 4 * st.offsets[si],
            size: 4 * s.len,
          })),
        });
      })
    );
    pieces.sort((a, b) => a.start - b.start);
    return Object.fromEntries(
      MOMENTS.slice(0, this.options.amsgrad ? 3 : 2).map((name, m) => [
        name,
        pieces.map((p) => p.ranges[m]),
      ]),
    );
  }

  /** One elementwise dispatch per batch. */
  protected encodeKernels(): void {
    for (const b of this.#batches) {
      this.dispatch(b.pipe, b.bind, b.tiles, "adam");
    }
  }
}

/**
 * AdamW (Loshchilov & Hutter): Adam with decoupled weight decay, default 0.01.
 *
 * @example
 * ```ts
 * import { AdamW, requestDevice } from "../../mod.ts";
 * const device = await requestDevice();
 * const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
 * const param = device.createBuffer({ size: 16, usage });
 * const grad = device.createBuffer({ size: 16, usage });
 * const opt = new AdamW(device, [{ param, grad, length: 4 }]);
 * console.log(opt.paramGroups[0].weightDecay); // 0.01
 * opt.dispose();
 * device.destroy();
 * ```
 */
export class AdamW extends Adam {
  /**
   * Allocates zeroed moments and plans the dispatches.
   *
   * @param device The device owning the tensors' buffers.
   * @param params Tensors or param groups.
   * @param options Hyperparameters and placement options.
   */
  constructor(
    device: GPUDevice,
    params: readonly (GpuTensor | ParamGroupSpec<GpuTensor>)[],
    options: AdamOptions & PlacementOptions = {},
  ) {
    super(device, params, options, "AdamW", {
      weightDecay: 0.01,
      decoupledWeightDecay: true,
    }, ADAMW_KEYS);
  }
}

/**
 * AMSGrad (Reddi et al. 2018): Adam with the running maximum of the second
 * moment (taken before bias correction, as PyTorch does).
 *
 * @example
 * ```ts
 * import { AMSGrad, requestDevice } from "../../mod.ts";
 * const device = await requestDevice();
 * const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
 * const param = device.createBuffer({ size: 16, usage });
 * const grad = device.createBuffer({ size: 16, usage });
 * const opt = new AMSGrad(device, [{ param, grad, length: 4 }]);
 * console.log(opt.stateBytes()); // 48
 * opt.dispose();
 * device.destroy();
 * ```
 */
export class AMSGrad extends Adam {
  /**
   * Allocates zeroed moments and plans the dispatches.
   *
   * @param device The device owning the tensors' buffers.
   * @param params Tensors or param groups.
   * @param options Hyperparameters and placement options (`amsgrad` is always on, so it is not an option).
   */
  constructor(
    device: GPUDevice,
    params: readonly (GpuTensor | ParamGroupSpec<GpuTensor>)[],
    options: AdamOptions & PlacementOptions = {},
  ) {
    super(
      device,
      params,
      options,
      "AMSGrad",
      { amsgrad: true },
      AMSGRAD_KEYS,
    );
  }
}
