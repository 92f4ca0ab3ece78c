/**
 * The per-step scalars every optimizer kernel reads: the `Config` uniform
 * (constants), the `Step` storage buffer (step counter, window slot, skip
 * flag, bias corrections, then each param group's lr and weight decay), the
 * non-finite flag, and the ring of per-call hyperparameters that lets steps
 * encoded before one submit each keep their own learning rate.
 * Layouts: `kernels/layout.wgsl`.
 *
 * @module
 */

import { createFilled } from "../gpu/buffers.ts";

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

/** What the `Step` buffer's header says (its first {@link STEP_READBACK_BYTES} bytes). */
export interface StepHeader {
  /** 1 when the last step call was skipped or refused. */
  skip: number;
  /** Applied steps t. */
  t: number;
  /** Window slot of the next step (MicroAdam). */
  ring: number;
  /** Steps skipped for a non-finite gradient so far. */
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

/** Bytes of the `Step` header before the per-group hyperparameters. */
export const STEP_HEADER_BYTES = 64;
/** Byte offset of `hyper_call`, copied with the group hyperparameters. */
const HYPER_CALL_OFFSET = 48;
/** Steps that may be encoded before one submit, each with its own slot. */
export const HYPER_SLOTS = 64;
/** The flag's value when every gradient was finite. */
export const NO_BAD_TENSOR = 0xffffffff;
/** Bytes of the header that status and state dicts read back. */
export const STEP_READBACK_BYTES = 48;

/**
 * The scalar buffers of one optimizer. `own` registers each buffer with the
 * optimizer, which destroys it on dispose.
 */
export class StepScalars {
  /** Uniform with the kernel constants. */
  readonly config: GPUBuffer;
  /** Step scalars and per-group hyperparameters. */
  readonly step: GPUBuffer;
  /** Non-finite flag written by the check kernel (atomic min of a tensor index). */
  readonly flags: GPUBuffer;
  readonly #device: GPUDevice;
  readonly #ring: GPUBuffer;
  readonly #stride: number;

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
    const cfg = new ArrayBuffer(32);
    new Float32Array(cfg, 0, 3).set([kernel.beta1, kernel.beta2, kernel.eps]);
    new Uint32Array(cfg, 12, 5).set([
      kernel.window ?? 1,
      kernel.efBlock ?? 1,
      kernel.kind,
      kernel.amsgrad ? 1 : 0,
      kernel.decoupled ? 1 : 0,
    ]);
    this.config = own(
      createFilled(
        device,
        new Uint8Array(cfg),
        GPUBufferUsage.UNIFORM,
        "config",
      ),
    );
    // A slot: the call number (16 bytes, for `hyper_call`), then one 16-byte
    // GroupHyper per group, padded to copy alignment.
    this.#stride = Math.ceil((16 + 16 * paramGroups) / 256) * 256;
    this.step = own(device.createBuffer({
      label: "step scalars",
      size: HYPER_CALL_OFFSET + this.#stride,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
        GPUBufferUsage.COPY_DST,
    }));
    this.#ring = own(device.createBuffer({
      label: "hyperparameter ring",
      size: HYPER_SLOTS * this.#stride,
      usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    }));
    this.flags = own(createFilled(
      device,
      new Uint32Array([NO_BAD_TENSOR, 0, 0, 0]),
      GPUBufferUsage.STORAGE,
      "non-finite flag",
    ));
  }

  /**
   * Writes the groups' lr and weight decay for step call `call` into its ring
   * slot (queued now) and encodes the copy of that slot into the `Step`
   * buffer, so the kernels of this step read this call's values even when
   * later calls are encoded before the submit. The slot carries `call`: when
   * more than {@link HYPER_SLOTS} steps wait for one submit, a later call
   * overwrites the slot, and the prologue refuses the step (counted in
   * `refused`) rather than run it with another step's learning rate.
   */
  encodeHyper(
    encoder: GPUCommandEncoder,
    call: number,
    hyper: readonly { lr: number; weightDecay: number }[],
  ): void {
    const bytes = new ArrayBuffer(this.#stride);
    new Uint32Array(bytes, 0, 1)[0] = call;
    const values = new Float32Array(bytes, 16);
    hyper.forEach(({ lr, weightDecay }, i) => {
      // decay = 1 − lr·wd in f64, then rounded: the CPU references do the same.
      values.set([lr, weightDecay, 1 - lr * weightDecay, -lr], 4 * i);
    });
    const slot = ((call - 1) % HYPER_SLOTS) * this.#stride;
    this.#device.queue.writeBuffer(this.#ring, slot, bytes);
    encoder.copyBufferToBuffer(
      this.#ring,
      slot,
      this.step,
      HYPER_CALL_OFFSET,
      this.#stride,
    );
  }

  /** The header's fields from its first {@link STEP_READBACK_BYTES} bytes. */
  static decode(bytes: Uint8Array): StepHeader {
    const w = new Uint32Array(
      bytes.buffer.slice(
        bytes.byteOffset,
        bytes.byteOffset + STEP_READBACK_BYTES,
      ),
    );
    return {
      skip: w[0],
      t: w[1],
      ring: w[3],
      skipped: w[4],
      badTensor: w[5],
      calls: w[8],
      badCall: w[9],
      refused: w[10],
    };
  }

  /** Queues a header holding these counters, and clears the flag. */
  write(
    counters: { step: number; ring: number; skipped: number; calls: number },
  ): void {
    const q = this.#device.queue;
    const header = new Uint32Array(HYPER_CALL_OFFSET / 4);
    header[1] = counters.step;
    header[3] = counters.ring;
    header[4] = counters.skipped;
    header[8] = counters.calls;
    q.writeBuffer(this.step, 0, header);
    q.writeBuffer(this.flags, 0, new Uint32Array([NO_BAD_TENSOR]));
  }
}
