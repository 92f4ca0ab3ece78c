/**
 * The shared base of the CPU optimizers: parameter groups, the step and call
 * counters, the non-finite-gradient guard, tensor validation, `stateDict()` /
 * `loadStateDict()` and disposal. Subclasses only allocate their state arrays
 * and implement the arithmetic of one applied step, so every CPU optimizer
 * behaves the same way around the numbers.
 *
 * @module
 */

import {
  describe,
  DisposedError,
  InvalidOptionError,
  NonFiniteGradientError,
  StepLimitError,
  TensorMismatchError,
} from "../errors.ts";
import { matchState } from "../checkpoint/validate.ts";
import { loadCheckpoint, saveCheckpoint } from "../checkpoint/file.ts";
import { checkKeys } from "../core/checks.ts";
import { groupHyper, normalizeGroups } from "../core/groups.ts";
import type { ParamGroup, ParamGroupSpec } from "../core/groups.ts";
import type { DType, NonFinitePolicy } from "../core/options.ts";
import type { Schedule } from "../core/schedule.ts";
import type {
  ConfigValue,
  OptimizerState,
  OptimizerStatus,
  TensorState,
} from "../core/state.ts";
import { GRADIENT_LIMIT_LOG2, MAX_COUNT } from "../core/limits.ts";

/**
 * One tensor handed to a CPU optimizer. `param` is updated in place at every
 * applied step; `grad` is read at every step. A `Uint16Array` holds raw bf16
 * bit patterns and is accepted only by MicroAdam with `dtype: "bf16"`.
 *
 * @example
 * ```ts
 * import type { CpuTensor } from "./cpu_optimizer.ts";
 * const w: CpuTensor = { name: "w", param: new Float32Array(4), grad: new Float32Array(4) };
 * console.log(w.param.length); // 4
 * ```
 */
export interface CpuTensor {
  /** Parameter values (f32, or bf16 bits). */
  param: Float32Array | Uint16Array;
  /** Gradient values, same length and type as `param`. */
  grad: Float32Array | Uint16Array;
  /** Name used in error messages and state dicts. @default {the tensor's index} */
  name?: string;
}

/**
 * Options of a CPU optimizer's `step()`, the twins of the WebGPU ones that
 * mean something on the CPU.
 *
 * @example
 * ```ts
 * import { AdamCpu, type CpuStepOptions } from "../../mod.ts";
 * const opt = new AdamCpu([{ param: new Float32Array(2), grad: new Float32Array([1, 2]) }]);
 * const options: CpuStepOptions = { foundInf: true }; // the caller's own check found one
 * console.log(opt.step(options), opt.status().skipped); // false 1
 * ```
 */
export interface CpuStepOptions {
  /**
   * The caller's own finding of a non-finite gradient, as the WebGPU
   * optimizers' `step({ foundInf })` reads it from a GPU buffer: `true`
   * skips the step as a non-finite gradient does, `false` lets it run. Given
   * either way, Adam, AdamW and AMSGrad trust it and do not check the
   * gradients themselves (as on the GPU, where that saves a read of every
   * gradient); MicroAdam checks them too.
   * @default {undefined} (the optimizer's own check, as `nonFinite` says)
   */
  foundInf?: boolean;
}

/**
 * A typed array that holds optimizer state.
 *
 * @example
 * ```ts
 * import type { StateArray } from "./cpu_optimizer.ts";
 * const window: StateArray = new Uint32Array(10);
 * console.log(window.byteLength); // 40
 * ```
 */
export type StateArray = Float32Array | Uint32Array;

/**
 * The options every CPU optimizer's resolved options carry.
 *
 * @example
 * ```ts
 * import type { BaseResolvedOptions } from "./cpu_optimizer.ts";
 * const o: BaseResolvedOptions = { lr: 1e-3, weightDecay: 0, nonFinite: "skip" };
 * console.log(o.nonFinite); // "skip"
 * ```
 */
export interface BaseResolvedOptions {
  /** Base learning rate. */
  lr: number;
  /** Weight decay. */
  weightDecay: number;
  /** Schedule, or undefined for a constant lr. */
  schedule?: Schedule;
  /** Non-finite gradient policy. */
  nonFinite: NonFinitePolicy;
}

/**
 * What `CpuOptimizer.applyStep` gets for each tensor: the lr and weight
 * decay of its group at this step (schedule applied).
 *
 * @example
 * ```ts
 * import type { TensorStepInput } from "./cpu_optimizer.ts";
 * const x: TensorStepInput = {
 *   index: 0,
 *   tensor: { param: new Float32Array(1), grad: new Float32Array(1) },
 *   lr: 0.01,
 *   weightDecay: 0,
 * };
 * console.log(x.lr); // 0.01
 * ```
 */
export interface TensorStepInput {
  /** Flat tensor index (over all groups, in order). */
  index: number;
  /** The tensor itself. */
  tensor: CpuTensor;
  /** Learning rate for this step (schedule applied). */
  lr: number;
  /** Weight decay for this step. */
  weightDecay: number;
}

/**
 * Base class of the CPU optimizers. Not used directly: see `AdamCpu`,
 * `MicroAdamCpu` and friends.
 *
 * Semantics shared by all of them:
 * - `step()` evaluates every group's lr and weight decay (schedule called
 *   with the 1-based call number), then checks every gradient for NaN/±Inf
 *   (and magnitudes of 2^60 or more) before anything is mutated. A non-finite
 *   gradient counts a call and a skip and leaves the state bit-identical;
 *   with `nonFinite: "error"` it then throws {@link NonFiniteGradientError}.
 *   With `nonFinite: "unchecked"` (Adam family) there is no check: every step
 *   is applied, whatever the gradients hold. An invalid lr from a schedule
 *   throws before anything is counted.
 * - `t` (`status().step`) counts applied steps only, shared by all tensors.
 * - State dicts hold little-endian byte copies of the state arrays.
 *
 * @example
 * ```ts
 * import { AdamCpu } from "./adam.ts";
 * const opt = new AdamCpu([{ param: new Float32Array([1]), grad: new Float32Array([NaN]) }]);
 * console.log(opt.step(), opt.status()); // false { step: 0, calls: 1, skipped: 1 }
 * ```
 */
export abstract class CpuOptimizer<O extends BaseResolvedOptions> {
  /** Parameter groups; `lr`, `weightDecay` and `schedule` are read at every step. */
  readonly paramGroups: ParamGroup<CpuTensor>[];
  /** The resolved options. */
  readonly options: O;
  /** Optimizer kind written into state dicts, e.g. `"Adam"`. */
  readonly kind: string;
  /** Element type the tensors must have. */
  readonly dtype: DType;
  #lengths: number[];
  #names: string[];
  #named: boolean[];
  #state: Record<string, StateArray>[] | null = null;
  #step = 0;
  #calls = 0;
  #skipped = 0;
  #lastBad?: string;
  #disposed = false;

  /**
   * Resolves the groups and validates every tensor; the subclass then
   * allocates its state with {@link CpuOptimizer.initState}.
   *
   * @param kind Optimizer kind for state dicts and messages.
   * @param params Tensors, or groups of tensors.
   * @param options Already resolved and validated options.
   * @param dtype The array type every tensor must use.
   */
  protected constructor(
    kind: string,
    params: readonly (CpuTensor | ParamGroupSpec<CpuTensor>)[],
    options: O,
    dtype: DType,
  ) {
    this.kind = kind;
    this.options = options;
    this.dtype = dtype;
    this.paramGroups = normalizeGroups<CpuTensor>(params, options);
    const tensors = this.paramGroups.flatMap((g) => g.params);
    tensors.forEach((t, i) => {
      const name = (t as { name?: unknown } | null)?.name;
      if (name !== undefined && typeof name !== "string") {
        throw new TensorMismatchError(
          `tensor ${i}: name must be a string, got ${describe(name)}`,
        );
      }
    });
    this.#names = tensors.map((t, i) => t?.name ?? String(i));
    this.#named = tensors.map((t) => t?.name !== undefined);
    this.#lengths = tensors.map((t, i) => this.#checkTensor(t, i));
    this.#checkAliasing(tensors);
  }

  /** Rejects arrays that share memory: a step would read what it just wrote. */
  #checkAliasing(tensors: CpuTensor[]): void {
    const views = new Map<ArrayBufferLike, [number, number, string][]>();
    tensors.forEach((t, i) => {
      for (const field of ["param", "grad"] as const) {
        const a = t[field];
        const list = views.get(a.buffer) ?? [];
        list.push([
          a.byteOffset,
          a.byteOffset + a.byteLength,
          `tensor ${i} (${JSON.stringify(this.#names[i])}) ${field}`,
        ]);
        views.set(a.buffer, list);
      }
    });
    for (const list of views.values()) {
      list.sort((a, b) => a[0] - b[0]);
      for (let k = 1; k < list.length; k++) {
        if (list[k][0] < list[k - 1][1]) {
          throw new TensorMismatchError(
            `${list[k - 1][2]} and ${list[k][2]} overlap in memory (bytes ${
              list[k][0]
            }..${
              list[k - 1][1] - 1
            } of one ArrayBuffer); give each its own array`,
          );
        }
      }
    }
  }

  /** Validates one tensor and returns its length. */
  #checkTensor(t: CpuTensor, i: number, length?: number): number {
    const label = `tensor ${i} (${JSON.stringify(this.#names[i])})`;
    if (typeof t !== "object" || t === null) {
      throw new TensorMismatchError(
        `${label}: expected { param, grad }, got ${describe(t)}`,
      );
    }
    const want = this.dtype === "bf16" ? Uint16Array : Float32Array;
    const wantName = this.dtype === "bf16"
      ? "Uint16Array (bf16 bits)"
      : "Float32Array";
    for (const field of ["param", "grad"] as const) {
      if (!(t[field] instanceof want)) {
        const gpu = typeof GPUBuffer !== "undefined" &&
          t[field] instanceof GPUBuffer;
        throw new TensorMismatchError(
          `${label}: ${field} should be a ${wantName} for dtype "${this.dtype}", got ${
            describe(t[field])
          }${
            gpu
              ? ` (a CPU optimizer works on host arrays; for GPU buffers use the WebGPU ${
                this.kind.replace(/Cpu$/, "")
              })`
              : ""
          }`,
        );
      }
    }
    if (t.param.length !== t.grad.length) {
      throw new TensorMismatchError(
        `${label}: param has ${t.param.length} elements but grad has ${t.grad.length}`,
      );
    }
    if (t.param.length === 0) {
      throw new TensorMismatchError(
        `${label}: expected at least one element, got 0`,
      );
    }
    if (length !== undefined && t.param.length !== length) {
      throw new TensorMismatchError(
        `${label}: expected ${length} elements (as at construction), got ${t.param.length}`,
      );
    }
    return t.param.length;
  }

  /** Element counts of the tensors, in optimizer order. */
  protected get lengths(): readonly number[] {
    return this.#lengths;
  }

  /** Installs the state arrays; subclasses call it once from their constructor. */
  protected initState(state: Record<string, StateArray>[]): void {
    this.#state = state;
  }

  /** The live state arrays (throws once disposed). */
  protected get state(): Record<string, StateArray>[] {
    return this.#live();
  }

  #live(): Record<string, StateArray>[] {
    if (this.#disposed || this.#state === null) {
      throw new DisposedError(
        `${this.kind}: this optimizer has been disposed; create a new one`,
      );
    }
    return this.#state;
  }

  /**
   * One applied step, with `t` already incremented and every gradient finite
   * (below 2^60 in magnitude), unless the policy is `"unchecked"`.
   */
  protected abstract applyStep(t: number, tensors: TensorStepInput[]): void;

  /** State-shaping configuration stored in (and demanded from) state dicts. */
  protected abstract stateConfig(): Record<string, ConfigValue>;

  /** Whether weight decay is decoupled, `p ← p·(1 − lr·wd)` (true unless overridden). */
  protected get decoupledDecay(): boolean {
    return true;
  }

  /** Window ring position for state dicts (0 unless overridden). */
  protected get ring(): number {
    return 0;
  }

  /** Restores the ring position from a state dict (no-op unless overridden). */
  protected set ring(_r: number) {}

  /**
   * Extra checks of a state dict beyond sizes and config (e.g. ring range,
   * index bounds). Throw `CheckpointError`; nothing is loaded yet.
   */
  protected validateState(_s: OptimizerState): void {}

  /**
   * Whether the optimizer checks the gradients itself even when the caller
   * hands it a found-inf flag (`step({ foundInf })`): true unless
   * overridden (MicroAdam, whose GPU twin's check costs nothing); the Adam
   * family trusts the flag.
   */
  protected get checksWithFoundInf(): boolean {
    return true;
  }

  /**
   * Performs one optimizer step.
   *
   * @param options See {@link CpuStepOptions}.
   * @returns true when applied, false when skipped for a non-finite gradient
   * or a `foundInf` of true (never for a gradient with `nonFinite: "unchecked"`).
   * @throws {NonFiniteGradientError} on a non-finite gradient (or a `foundInf`
   * of true) with `nonFinite: "error"`.
   * @throws {InvalidOptionError} for options that are not {@link CpuStepOptions}.
   */
  step(options: CpuStepOptions = {}): boolean {
    this.#live();
    const flag = checkKeys(options, ["foundInf"], "step options").foundInf;
    if (flag !== undefined && typeof flag !== "boolean") {
      throw new InvalidOptionError(
        `step options: foundInf: expected a boolean, got ${describe(flag)}`,
      );
    }
    if (this.#calls >= MAX_COUNT) {
      throw new StepLimitError(
        `${this.kind}: ${this.#calls} step calls, the most the optimizers count (the GPU twins hold it in a u32); save the parameters and start a new optimizer`,
      );
    }
    this.paramGroups.forEach((g, gi) => {
      if (typeof g !== "object" || g === null || !Array.isArray(g.params)) {
        throw new TensorMismatchError(
          `group ${gi}: expected a param group { params, lr, weightDecay }, got ${
            describe(g)
          }`,
        );
      }
    });
    const call = this.#calls + 1;
    const hyper = this.paramGroups.map((g, i) =>
      groupHyper(g, call, i, this.decoupledDecay)
    );
    const count = this.paramGroups.reduce((n, g) => n + g.params.length, 0);
    if (count !== this.#lengths.length) {
      // State is allocated per tensor at construction; it cannot follow edits.
      throw new TensorMismatchError(
        `expected ${this.#lengths.length} tensors (as at construction), the groups now hold ${count}`,
      );
    }
    const inputs: TensorStepInput[] = [];
    let index = 0;
    this.paramGroups.forEach((g, gi) => {
      for (const tensor of g.params) {
        this.#checkTensor(tensor, index, this.#lengths[index]);
        inputs.push({ index, tensor, ...hyper[gi] });
        index++;
      }
    });
    // Every gradient is checked before any state changes, so a skip is exact
    // (policy "unchecked", or a caller's flag that the optimizer trusts: not
    // at all, as on the GPU). A bad tensor is named before the flag.
    const checks = this.options.nonFinite !== "unchecked" &&
      (flag === undefined || this.checksWithFoundInf);
    const bad = checks
      ? inputs.find((x) => !allWithinLimit(x.tensor.grad))
      : undefined;
    this.#calls = call;
    if (bad || flag === true) {
      this.#skipped++;
      this.#lastBad = bad ? this.#names[bad.index] : undefined;
      if (this.options.nonFinite === "error") {
        throw bad
          ? new NonFiniteGradientError(this.#names[bad.index], call)
          : new NonFiniteGradientError("", call, true);
      }
      return false;
    }
    this.#step++;
    this.applyStep(this.#step, inputs);
    return true;
  }

  /**
   * The learning rate of param group `group` at the last `step()` call: its
   * base `lr` times its schedule at that call (at call 1 before any step),
   * as on the GPU twins.
   *
   * @example
   * ```ts
   * import { AdamCpu, linearWarmup } from "../../mod.ts";
   * const opt = new AdamCpu([{ param: new Float32Array(2), grad: new Float32Array(2) }], { lr: 0.1, schedule: linearWarmup(4) });
   * opt.step();
   * console.log(opt.currentLr()); // 0.025
   * ```
   */
  currentLr(group = 0): number {
    const g = this.paramGroups[group];
    if (g === undefined) {
      throw new InvalidOptionError(
        `group: expected an index in [0, ${this.paramGroups.length}), got ${group}`,
      );
    }
    return groupHyper(g, Math.max(this.#calls, 1), group, this.decoupledDecay)
      .lr;
  }

  /**
   * Progress counters.
   *
   * @returns applied steps, calls and skips.
   */
  status(): OptimizerStatus {
    this.#live();
    const s: OptimizerStatus = {
      step: this.#step,
      calls: this.#calls,
      skipped: this.#skipped,
    };
    if (this.#lastBad !== undefined) s.lastNonFiniteTensor = this.#lastBad;
    return s;
  }

  /**
   * Exact bytes of the optimizer state arrays held (scratch excluded).
   *
   * @returns the byte count.
   */
  stateBytes(): number {
    let n = 0;
    for (const t of this.#live()) {
      for (const a of Object.values(t)) n += a.byteLength;
    }
    return n;
  }

  /**
   * A copy of the full state.
   *
   * @returns counters, config and a byte copy of every state buffer.
   */
  stateDict(): OptimizerState {
    const state = this.#live();
    const tensors: TensorState[] = state.map((bufs, i) => ({
      name: this.#names[i],
      length: this.#lengths[i],
      buffers: Object.fromEntries(
        Object.entries(bufs).map((
          [k, a],
        ) => [k, new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice()]),
      ),
    }));
    return {
      optimizer: this.kind,
      config: this.stateConfig(),
      step: this.#step,
      calls: this.#calls,
      skipped: this.#skipped,
      ring: this.ring,
      tensors,
    };
  }

  /**
   * Replaces the state with `s`, after validating all of it.
   *
   * @param s A state from `stateDict()` (of this or a GPU optimizer of the same kind and config).
   * @throws CheckpointError when `s` does not fit; the current state is then untouched.
   */
  loadStateDict(s: OptimizerState): void {
    const state = this.#live();
    const matched = matchState(s, {
      optimizer: this.kind,
      config: this.stateConfig(),
      tensors: state.map((bufs, i) => ({
        name: this.#names[i],
        named: this.#named[i],
        length: this.#lengths[i],
        buffers: Object.fromEntries(
          Object.entries(bufs).map(([k, a]) => [k, a.byteLength]),
        ),
      })),
      maxCounter: MAX_COUNT,
    });
    this.validateState(matched);
    state.forEach((bufs, i) => {
      for (const [k, a] of Object.entries(bufs)) {
        new Uint8Array(a.buffer, a.byteOffset, a.byteLength).set(
          matched.tensors[i].buffers[k],
        );
      }
    });
    this.#step = matched.step;
    this.#calls = matched.calls;
    this.#skipped = matched.skipped;
    this.#lastBad = undefined;
    this.ring = matched.ring;
  }

  /** Drops the state; any further use throws. Safe to call twice. */
  dispose(): void {
    this.#disposed = true;
    this.#state = null;
  }

  /** Saves the state to `path` atomically (temp file, fsync, rename). */
  async save(path: string): Promise<void> {
    await saveCheckpoint(path, this.stateDict());
  }

  /** Loads a checkpoint written by {@link CpuOptimizer.save} (or by the GPU optimizer of the same kind and config). */
  async load(path: string): Promise<void> {
    this.loadStateDict(await loadCheckpoint(path));
  }

  /** Same as {@link CpuOptimizer.dispose}, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

const GRADIENT_LIMIT = 2 ** GRADIENT_LIMIT_LOG2;
// bf16 bits with |value| >= 2^GRADIENT_LIMIT_LOG2: exponent field at or above 127 + log2.
const BF16_LIMIT_EXPONENT = (127 + GRADIENT_LIMIT_LOG2) << 7;

/**
 * True when every value is usable as a gradient: finite and of magnitude
 * below 2^60 (`GRADIENT_LIMIT_LOG2`). For bf16 bits, the exponent field
 * decides. The GPU's check kernel applies the same rule.
 *
 * @example
 * ```ts
 * import { allWithinLimit } from "./cpu_optimizer.ts";
 * console.log(allWithinLimit(new Float32Array([1, -2e17])), allWithinLimit(new Float32Array([2e18]))); // true false
 * console.log(allWithinLimit(new Uint16Array([0x3f80])), allWithinLimit(new Uint16Array([0x7f80]))); // true false
 * ```
 */
export function allWithinLimit(values: Float32Array | Uint16Array): boolean {
  if (values instanceof Uint16Array) {
    for (let i = 0; i < values.length; i++) {
      if ((values[i] & 0x7f80) >= BF16_LIMIT_EXPONENT) return false;
    }
    return true;
  }
  for (let i = 0; i < values.length; i++) {
    // `!(… < …)` is true for NaN as well.
    if (!(Math.abs(values[i]) < GRADIENT_LIMIT)) return false;
  }
  return true;
}
