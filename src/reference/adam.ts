/**
 * Adam, AdamW and AMSGrad on the CPU in f32, rounding after every operation in
 * the order the WGSL kernel uses, so CPU and GPU agree bit for bit:
 *
 * ```
 * g = grad; if L2 and wd > 0: g = f32(g + f32(f32(wd)·p))
 * if decoupled and wd > 0:    p = f32(p · f32(1 − lr·wd))          (1 − lr·wd in f64)
 * m = f32(f32(β1·m) + f32(f32(1 − β1)·g))
 * v = f32(f32(β2·v) + f32(f32(f32(1 − β2)·g)·g))
 * v̂ = amsgrad ? (vmax = max(vmax, v)) : v                       (WGSL's max: a NaN operand gives the other)
 * bc1 = f32(1 − β1^t), bc2 = f32(1 − β2^t)                          (β^t by powF32)
 * stepSize = f32(f32(lr) / bc1)                                      (lr as the f32 the GPU holds)
 * denom = f32(f32(f32(√v̂) / f32(√bc2)) + f32(ε))
 * p = f32(p − f32(stepSize · f32(m / denom)))
 * ```
 *
 * β1, β2 and ε are used as f32 values (`Math.fround`), so `1 − β` is the f32
 * subtraction a kernel with f32 uniforms computes. `max` is WGSL's (IEEE
 * maxNum: a NaN operand yields the other one), so that with
 * `nonFinite: "unchecked"` a NaN second moment leaves AMSGrad's maximum where
 * it was, on both twins; for numbers it is `Math.max`.
 *
 * @module
 */

import { powF32 } from "../numeric/f32.ts";
import type { ParamGroupSpec } from "../core/groups.ts";
import {
  ADAM_KEYS,
  ADAMW_KEYS,
  AMSGRAD_KEYS,
  resolveAdamOptions,
} from "../core/options.ts";
import type { AdamOptions, ResolvedAdamOptions } from "../core/options.ts";
import type { ConfigValue, OptimizerState } from "../core/state.ts";
import { checkAdamState } from "../core/state_checks.ts";
import { CpuOptimizer } from "./cpu_optimizer.ts";
import type { CpuTensor, TensorStepInput } from "./cpu_optimizer.ts";

const fr = Math.fround;

// WGSL's max(a, b): a NaN operand gives the other one (the kernel's
// max(vmax, v)); Math.max would give NaN.
const wgslMax = (a: number, b: number): number =>
  Number.isNaN(a) ? b : Number.isNaN(b) ? a : Math.max(a, b);

/**
 * The Adam family on the CPU (f32). State buffers per tensor: `expAvg`,
 * `expAvgSq` and, with `amsgrad`, `maxExpAvgSq` (f32 each). Use
 * {@link AdamCpu}, {@link AdamWCpu} or {@link AMSGradCpu}.
 *
 * @example
 * ```ts
 * import { AdamCpu } from "./adam.ts";
 * const param = new Float32Array([1]);
 * const opt = new AdamCpu([{ param, grad: new Float32Array([0.5]) }], { lr: 0.1 });
 * opt.step();
 * console.log(param[0].toFixed(4)); // "0.9000"
 * ```
 */
export class AdamFamilyCpu extends CpuOptimizer<ResolvedAdamOptions> {
  /**
   * Validates the options and tensors and allocates zeroed state.
   *
   * @param kind Optimizer kind (state dict name).
   * @param params Tensors (f32) or groups of tensors.
   * @param options Resolved options.
   */
  protected constructor(
    kind: string,
    params: readonly (CpuTensor | ParamGroupSpec<CpuTensor>)[],
    options: ResolvedAdamOptions,
  ) {
    super(kind, params, options, "f32");
    this.initState(this.lengths.map((d) => {
      const s: Record<string, Float32Array> = {
        expAvg: new Float32Array(d),
        expAvgSq: new Float32Array(d),
      };
      if (options.amsgrad) s.maxExpAvgSq = new Float32Array(d);
      return s;
    }));
  }

  /** A caller's found-inf flag replaces the check, as on the GPU. */
  protected override get checksWithFoundInf(): boolean {
    return false;
  }

  /** L2 (added to the gradient) unless `decoupledWeightDecay`. */
  protected override get decoupledDecay(): boolean {
    return this.options.decoupledWeightDecay;
  }

  /** Finite moments, second moments ≥ 0 (shared with the GPU twins). */
  protected override validateState(state: OptimizerState): void {
    checkAdamState(state);
  }

  /** Config that shapes the state: only `amsgrad` (and the kind). */
  protected stateConfig(): Record<string, ConfigValue> {
    return { amsgrad: this.options.amsgrad };
  }

  /** One f32 Adam step over every tensor. */
  protected applyStep(t: number, tensors: TensorStepInput[]): void {
    const o = this.options;
    const b1 = fr(o.betas[0]);
    const b2 = fr(o.betas[1]);
    const omb1 = fr(1 - b1);
    const omb2 = fr(1 - b2);
    const eps = fr(o.eps);
    const bc1 = fr(1 - powF32(b1, t));
    const sqrtBc2 = fr(Math.sqrt(fr(1 - powF32(b2, t))));
    for (const { index, tensor, lr, weightDecay: wd } of tensors) {
      const p = tensor.param as Float32Array;
      const grad = tensor.grad as Float32Array;
      const s = this.state[index];
      const m = s.expAvg as Float32Array;
      const v = s.expAvgSq as Float32Array;
      const vmax = s.maxExpAvgSq as Float32Array | undefined;
      const l2 = !o.decoupledWeightDecay && wd > 0 ? fr(wd) : 0;
      const decay = o.decoupledWeightDecay && wd > 0 ? fr(1 - lr * wd) : 1;
      const stepSize = fr(fr(lr) / bc1);
      for (let j = 0; j < p.length; j++) {
        let g = grad[j];
        let pj = p[j];
        if (l2 !== 0) g = fr(g + fr(l2 * pj));
        if (decay !== 1) pj = fr(pj * decay);
        const mj = fr(fr(b1 * m[j]) + fr(omb1 * g));
        const vj = fr(fr(b2 * v[j]) + fr(fr(omb2 * g) * g));
        m[j] = mj;
        v[j] = vj;
        let vv = vj;
        if (vmax) {
          vv = wgslMax(vmax[j], vj);
          vmax[j] = vv;
        }
        const denom = fr(fr(fr(Math.sqrt(vv)) / sqrtBc2) + eps);
        p[j] = fr(pj - fr(stepSize * fr(mj / denom)));
      }
    }
  }
}

/**
 * Adam (L2 weight decay added to the gradient unless `decoupledWeightDecay`).
 * Defaults: weightDecay 0.
 *
 * @example
 * ```ts
 * import { AdamCpu } from "./adam.ts";
 * const opt = new AdamCpu([{ param: new Float32Array(3), grad: new Float32Array([1, 2, 3]) }]);
 * opt.step();
 * console.log(opt.status().step, opt.stateBytes()); // 1 24
 * ```
 */
export class AdamCpu extends AdamFamilyCpu {
  /**
   * Validates the options and tensors and allocates zeroed state.
   *
   * @param params Tensors (f32) or groups of tensors.
   * @param options Adam options.
   */
  constructor(
    params: readonly (CpuTensor | ParamGroupSpec<CpuTensor>)[],
    options: AdamOptions = {},
  ) {
    super(
      "Adam",
      params,
      resolveAdamOptions(options, {}, ADAM_KEYS, "AdamCpu options"),
    );
  }
}

/**
 * AdamW: decoupled weight decay, default weightDecay 0.01.
 *
 * @example
 * ```ts
 * import { AdamWCpu } from "./adam.ts";
 * const param = new Float32Array([1]);
 * const opt = new AdamWCpu([{ param, grad: new Float32Array([0]) }], { lr: 0.1, weightDecay: 0.5 });
 * opt.step();
 * console.log(param[0]); // 0.949999988079071 (= f32(1 − 0.1·0.5); a zero gradient does not move it)
 * ```
 */
export class AdamWCpu extends AdamFamilyCpu {
  /**
   * Validates the options and tensors and allocates zeroed state.
   *
   * @param params Tensors (f32) or groups of tensors.
   * @param options AdamW options.
   */
  constructor(
    params: readonly (CpuTensor | ParamGroupSpec<CpuTensor>)[],
    options: AdamOptions = {},
  ) {
    super(
      "AdamW",
      params,
      resolveAdamOptions(
        options,
        { weightDecay: 0.01, decoupledWeightDecay: true },
        ADAMW_KEYS,
        "AdamWCpu options",
      ),
    );
  }
}

/**
 * AMSGrad: Adam with the running maximum of the second moment (`amsgrad`
 * forced on; state gains `maxExpAvgSq`).
 *
 * @example
 * ```ts
 * import { AMSGradCpu } from "./adam.ts";
 * const opt = new AMSGradCpu([{ param: new Float32Array(2), grad: new Float32Array([1, -1]) }]);
 * opt.step();
 * console.log(Object.keys(opt.stateDict().tensors[0].buffers)); // [ "expAvg", "expAvgSq", "maxExpAvgSq" ]
 * ```
 */
export class AMSGradCpu extends AdamFamilyCpu {
  /**
   * Validates the options and tensors and allocates zeroed state.
   *
   * @param params Tensors (f32) or groups of tensors.
   * @param options Adam options (`amsgrad` is always true, so it is not an option).
   */
  constructor(
    params: readonly (CpuTensor | ParamGroupSpec<CpuTensor>)[],
    options: AdamOptions = {},
  ) {
    super(
      "AMSGrad",
      params,
      resolveAdamOptions(
        options,
        { amsgrad: true },
        AMSGRAD_KEYS,
        "AMSGradCpu options",
      ),
    );
  }
}
