/**
 * Policy `nonFinite: "error"` without a per-step stall: each step copies its
 * 32-byte header into a small staging buffer that is mapped asynchronously;
 * when a mapped header says the step was skipped, the error waits for the
 * next `step()` or `status()` to throw it.
 *
 * @module
 */

import { NonFiniteGradientError } from "../errors.ts";
import { STEP_READBACK_BYTES, StepScalars } from "./step_scalars.ts";

/** Watches the skip flag of every step, for policy `"error"`. */
export class NonFiniteWatch {
  readonly #device: GPUDevice;
  readonly #step: GPUBuffer;
  readonly #own: (b: GPUBuffer) => GPUBuffer;
  readonly #tensorName: (index: number) => string;
  #pool: GPUBuffer[] = [];
  #unsubmitted: { staging: GPUBuffer; call: number }[] = [];
  #inFlight = new Set<Promise<void>>();
  #error?: Error;

  /**
   * @param device The device.
   * @param step The `Step` buffer (COPY_SRC).
   * @param own Registers a buffer for disposal and returns it.
   * @param tensorName Name of the tensor at an optimizer index.
   */
  constructor(
    device: GPUDevice,
    step: GPUBuffer,
    own: (b: GPUBuffer) => GPUBuffer,
    tensorName: (index: number) => string,
  ) {
    this.#device = device;
    this.#step = step;
    this.#own = own;
    this.#tensorName = tensorName;
  }

  /**
   * Encodes the copy of step call `call`'s header; `submitted` says whether
   * the encoder is submitted right after (else it is watched once
   * {@link flush} learns that it was).
   */
  encode(
    encoder: GPUCommandEncoder,
    call: number,
  ): (submitted: boolean) => void {
    const staging = this.#pool.pop() ?? this.#own(this.#device.createBuffer({
      label: "step readback",
      size: STEP_READBACK_BYTES,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    }));
    encoder.copyBufferToBuffer(this.#step, 0, staging, 0, STEP_READBACK_BYTES);
    return (submitted) => {
      if (submitted) this.#watch(staging, call);
      else this.#unsubmitted.push({ staging, call });
    };
  }

  /** Starts watching the steps encoded into callers' encoders (now submitted). */
  flush(): void {
    for (const u of this.#unsubmitted.splice(0)) this.#watch(u.staging, u.call);
  }

  /** Waits for every watched step. */
  async settle(): Promise<void> {
    await Promise.all([...this.#inFlight]);
  }

  /** The error of a skipped step not yet reported, cleared as it is taken. */
  take(): Error | undefined {
    const e = this.#error;
    this.#error = undefined;
    return e;
  }

  /** Forgets a pending error (a loaded state replaces what it was about). */
  clear(): void {
    this.#error = undefined;
  }

  #watch(staging: GPUBuffer, call: number): void {
    const done = staging.mapAsync(GPUMapMode.READ).then(() => {
      const h = StepScalars.decode(
        new Uint8Array(staging.getMappedRange(0, STEP_READBACK_BYTES)),
      );
      staging.unmap();
      this.#pool.push(staging);
      if (h.skip === 1 && !this.#error) {
        this.#error = new NonFiniteGradientError(
          this.#tensorName(h.badTensor - 1),
          call,
        );
      }
    }, () => {/* device lost or destroyed: reported by the lifecycle */});
    this.#inFlight.add(done);
    done.finally(() => this.#inFlight.delete(done));
  }
}
