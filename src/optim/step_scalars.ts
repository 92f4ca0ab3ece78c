/**
 * The per-step scalars every optimizer kernel reads: the `Config` uniform
 * (constants), the `Step` storage buffer (step counter, window slot, skip
 * flag, bias corrections, then each param group's lr and weight decay), the
 * non-finite flag, and the ring of per-call hyperparameters that lets steps
 * encoded before one submit each keep their own learning rate.
 * Layouts: `CONFIG` and `STEP` in `src/gpu/layout.ts`.
 *
 * @module
 */

import { MAX_COUNT } from "../core/limits.ts";
import { bindBuffers, createFilled } from "../gpu/buffers.ts";
import {
  CALL_IDS,
  CONFIG,
  GROUP_HYPER,
  STEP,
  STEP_CALL,
  STEP_HEADER_BYTES,
  STEP_READBACK_BYTES,
} from "../gpu/layout.ts";

export { STEP_HEADER_BYTES, STEP_READBACK_BYTES };

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

/** What the `Step` buffer's header says (its first 32 bytes). */
export interface StepHeader {
  /** 1 when the last step was skipped. */
  skip: number;
  /** Applied steps t. */
  t: number;
  /** Window slot of the next step (MicroAdam). */
  ring: number;
  /** Skipped steps so far. */
  skipped: number;
  /** 1 + index of the non-finite tensor of the last skip; 0 if none. */
  badTensor: number;
  /** Step calls the GPU has executed (applied, skipped or refused). */
  calls: number;
  /** The call number of the last skip for a non-finite gradient (0 if none). */
  badCall: number;
  /** Step calls refused because their hyperparameter slot was overwritten. */
  refused: number;
}

/**
 * One buffer per device holding the numbers 0 … CALL_IDS − 1, each at its own
 * binding offset: the dynamic offset of entry `c mod CALL_IDS` tells the
 * prologue which call it runs, through the command encoder itself (offsets
 * are fixed at encode time), where no queued write can change it.
 */
const callIds = new WeakMap<GPUDevice, { buffer: GPUBuffer; stride: number }>();

function callIdBuffer(
  device: GPUDevice,
): { buffer: GPUBuffer; stride: number } {
  let ids = callIds.get(device);
  if (!ids) {
    const stride = Math.max(device.limits.minStorageBufferOffsetAlignment, 4);
    const words = new Uint32Array(CALL_IDS * stride / 4);
    for (let j = 0; j < CALL_IDS; j++) words[j * stride / 4] = j;
    ids = {
      stride,
      buffer: createFilled(device, words, GPUBufferUsage.STORAGE, "call ids"),
    };
    callIds.set(device, ids);
  }
  return ids;
}

/** Steps that may be encoded before one submit, each with its own slot. */
export const HYPER_SLOTS = 64;
/** The flag's value when every gradient was finite. */
export const NO_BAD_TENSOR = 0xffffffff;

/**
 * The scalar buffers of one optimizer. `own` registers each buffer with the
 * optimizer, which destroys it on dispose.
 */
export class StepScalars {
  /** Uniform with the kernel constants. */
  readonly config: GPUBuffer;
  /** Step scalars and per-group hyperparameters. */
  readonly step: GPUBuffer;
  /**
   * The non-finite flags: word 0 the first non-finite tensor's index (the
   * check kernels' atomic min), word FOUND_INF_WORD the caller's found-inf
   * flag (copied in by `step({ foundInf })`); the prologue reads and resets
   * both.
   */
  readonly flags: GPUBuffer;
  readonly #device: GPUDevice;
  readonly #ring: GPUBuffer;
  readonly #stride: number;
  readonly #ids: { buffer: GPUBuffer; stride: number };
  #prologue?: GPUBindGroup;
  // The calls whose ring slots one write filled ahead (queueHyper), with the
  // lr and weight decay of each group, flattened.
  #run?: { from: number; to: number; values: number[] };
  // The values of the last call, and the last call encoded into a caller's
  // encoder (whose submit step() does not see).
  #previous?: number[];
  #lastEncodedCall = -Infinity;

  /**
   * Allocates the buffers.
   *
   * @param device The device.
   * @param kernel Constants for the `Config` uniform.
   * @param paramGroups Number of param groups.
   * @param own Registers a buffer for disposal and returns it.
   */
  constructor(
    device: GPUDevice,
    kernel: KernelConfig,
    paramGroups: number,
    own: (b: GPUBuffer) => GPUBuffer,
  ) {
    this.#device = device;
    this.#ids = callIdBuffer(device);
    const cfg = CONFIG.encode({
      beta1: kernel.beta1,
      beta2: kernel.beta2,
      eps: kernel.eps,
      window: kernel.window ?? 1,
      ef_block: kernel.efBlock ?? 1,
      kind: kernel.kind,
      amsgrad: kernel.amsgrad ? 1 : 0,
      decoupled: kernel.decoupled ? 1 : 0,
      one: 1,
    });
    this.config = own(
      createFilled(device, cfg, GPUBufferUsage.UNIFORM, "config"),
    );
    // The per-call part (call number, one GroupHyper per group), a slot
    // padded to 256 bytes, the largest storage offset alignment a device
    // may ask for.
    this.#stride = Math.ceil(
      (STEP_CALL.bytes + GROUP_HYPER.bytes * paramGroups) / 256,
    ) * 256;
    this.step = own(device.createBuffer({
      label: "step scalars",
      size: STEP_HEADER_BYTES + this.#stride,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
        GPUBufferUsage.COPY_DST,
    }));
    this.#ring = own(device.createBuffer({
      label: "hyperparameter ring",
      size: HYPER_SLOTS * this.#stride,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    }));
    this.flags = own(createFilled(
      device,
      new Uint32Array([NO_BAD_TENSOR, 0, 0, 0]),
      GPUBufferUsage.STORAGE,
      "non-finite flag",
    ));
  }

  /**
   * Queues the groups' lr and weight decay for step call `call` into its
   * ring slot, which the prologue of that call binds ({@link
   * prologueOffsets}) and copies into the `Step` buffer: the kernels of
   * this step read this call's values even when later calls are encoded
   * before the submit, and the step needs no copy command of its own. The
   * slot carries `call`: when more than {@link HYPER_SLOTS} steps wait for
   * one submit, a later call overwrites the slot, and the prologue refuses
   * the step (counted in `refused`) rather than run it with another step's
   * learning rate.
   *
   * A run of calls that `step()` submits itself (`submitted`) with the same
   * values writes the whole ring at once, for this call and the next
   * {@link HYPER_SLOTS} − 1, and those calls queue no write: each write is a
   * copy the GPU runs before the step (about 5 µs of an AdamW step at 2^24,
   * bench/RESULTS.md, round 14). The ring's old slots belong to the previous
   * {@link HYPER_SLOTS} calls, so this happens only when each of them was
   * submitted by `step()` too, hence already queued ahead of the write.
   *
   * @param call The step call's number.
   * @param hyper Each param group's lr and weight decay for this call.
   * @param submitted Whether `step()` submits this call itself (no caller's
   * encoder).
   */
  queueHyper(
    call: number,
    hyper: readonly { lr: number; weightDecay: number }[],
    submitted: boolean,
  ): void {
    const values = hyper.flatMap(({ lr, weightDecay }) => [lr, weightDecay]);
    const same = (other?: readonly number[]) =>
      other !== undefined && other.length === values.length &&
      other.every((x, i) => Object.is(x, values[i]));
    if (!submitted) this.#lastEncodedCall = call;
    const run = this.#run;
    const previous = this.#previous;
    this.#previous = values;
    if (
      submitted && run && call >= run.from && call < run.to && same(run.values)
    ) {
      return;
    }
    const slots = submitted && same(previous) &&
        call - this.#lastEncodedCall > HYPER_SLOTS
      ? Math.min(HYPER_SLOTS, MAX_COUNT - call + 1)
      : 1;
    // One slot is written where it lies; several, as the whole ring from 0.
    const base = slots === 1 ? this.#slotOffset(call) : 0;
    const bytes = new Uint8Array(slots === 1 ? this.#stride : this.#ring.size);
    const view = new DataView(bytes.buffer);
    for (let c = call; c < call + slots; c++) {
      const at = this.#slotOffset(c) - base;
      STEP_CALL.write(view, { call: c }, at);
      hyper.forEach(({ lr, weightDecay }, i) => {
        // decay = 1 − lr·wd in f64, then rounded: the CPU references do the same.
        GROUP_HYPER.write(view, {
          lr,
          wd: weightDecay,
          decay: 1 - lr * weightDecay,
          neg_lr: -lr,
        }, at + STEP_CALL.bytes + GROUP_HYPER.bytes * i);
      });
    }
    this.#device.queue.writeBuffer(this.#ring, base, bytes);
    this.#run = slots > 1
      ? { from: call, to: call + slots, values }
      : undefined;
  }

  // Where step call `call`'s ring slot starts.
  #slotOffset(call: number): number {
    return ((call - 1) % HYPER_SLOTS) * this.#stride;
  }

  /**
   * The prologue's bind group: the scalars, the call identities and the
   * hyperparameter ring, of which step call `call` binds the entries at
   * {@link prologueOffsets}.
   */
  prologueBindGroup(layout: GPUBindGroupLayout): GPUBindGroup {
    return this.#prologue ??= bindBuffers(this.#device, layout, [
      this.config,
      this.step,
      this.flags,
      { buffer: this.#ids.buffer, size: 4 },
      { buffer: this.#ring, size: this.#stride },
    ], "prologue");
  }

  /**
   * The dynamic offsets that give the prologue step call `call`'s identity
   * and its ring slot.
   */
  prologueOffsets(call: number): number[] {
    return [(call % CALL_IDS) * this.#ids.stride, this.#slotOffset(call)];
  }

  /** The header's fields from its first {@link STEP_READBACK_BYTES} bytes. */
  static decode(bytes: Uint8Array): StepHeader {
    const h = STEP.decode(bytes.subarray(0, STEP_READBACK_BYTES));
    return {
      skip: h.skip,
      t: h.t,
      ring: h.ring,
      skipped: h.skipped,
      badTensor: h.bad_tensor,
      calls: h.calls,
      badCall: h.bad_call,
      refused: h.refused,
    };
  }

  /** Queues a header holding these counters, and clears the flags. */
  write(
    counters: { step: number; ring: number; skipped: number; calls: number },
  ): void {
    const q = this.#device.queue;
    q.writeBuffer(
      this.step,
      0,
      STEP.encode({
        t: counters.step,
        ring: counters.ring,
        skipped: counters.skipped,
        calls: counters.calls,
      }).subarray(0, STEP_HEADER_BYTES),
    );
    q.writeBuffer(this.flags, 0, new Uint32Array([NO_BAD_TENSOR, 0, 0, 0]));
  }
}
