/**
 * Policy `nonFinite: "error"` without a per-step stall and with bounded
 * resources: after a step, if no readback is in flight, the optimizer submits
 * a copy of the 48-byte step header into its one staging buffer and maps it
 * asynchronously. The header's counters are cumulative (skips, the call of
 * the last skip), so a skip is seen by the next readback whatever happened in
 * between, and reported by the next `step()` or `status()`. The copy is the
 * optimizer's own submit, so it reads what the GPU has executed so far and
 * never touches a caller's encoder.
 *
 * @module
 */

import { NonFiniteGradientError } from "../errors.ts";
import { FOUND_INF_SKIP } from "../gpu/layout.ts";
import {
  STEP_READBACK_BYTES,
  type StepHeader,
  StepScalars,
} from "./step_scalars.ts";

/** Watches the skip counter of the step header, for policy `"error"`. */
export class NonFiniteWatch {
  readonly #device: GPUDevice;
  readonly #step: GPUBuffer;
  readonly #staging: GPUBuffer;
  readonly #tensorName: (index: number) => string;
  #inFlight?: Promise<void>;
  #seenSkipped = 0;
  #error?: NonFiniteGradientError;

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
    this.#tensorName = tensorName;
    this.#staging = own(device.createBuffer({
      label: "step header readback",
      size: STEP_READBACK_BYTES,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    }));
  }

  /** Starts a readback of the header unless one is in flight. */
  poll(): void {
    if (this.#inFlight) return;
    const enc = this.#device.createCommandEncoder({ label: "step watch" });
    enc.copyBufferToBuffer(
      this.#step,
      0,
      this.#staging,
      0,
      STEP_READBACK_BYTES,
    );
    this.#device.queue.submit([enc.finish()]);
    const staging = this.#staging;
    const done = staging.mapAsync(GPUMapMode.READ).then(() => {
      try {
        this.observe(
          StepScalars.decode(
            new Uint8Array(staging.getMappedRange(0, STEP_READBACK_BYTES)),
          ),
        );
      } finally {
        staging.unmap();
      }
    }).catch(() => {
      // Disposed or device lost meanwhile: the lifecycle reports those.
    }).finally(() => {
      this.#inFlight = undefined;
    });
    this.#inFlight = done;
  }

  /** Notes a header read back (here or by `status()`); a new skip becomes the pending error. */
  observe(h: StepHeader): void {
    if (h.skipped > this.#seenSkipped) {
      this.#seenSkipped = h.skipped;
      const byFlag = h.badTensor === FOUND_INF_SKIP;
      this.#error = new NonFiniteGradientError(
        byFlag ? "" : this.#tensorName(h.badTensor - 1),
        h.badCall,
        byFlag,
      );
    }
  }

  /** Waits for the readback in flight, if any. */
  async settle(): Promise<void> {
    await this.#inFlight;
  }

  /** The error of a skipped step not yet reported, cleared as it is taken. */
  take(): NonFiniteGradientError | undefined {
    const e = this.#error;
    this.#error = undefined;
    return e;
  }

  /** Starts over from a loaded state's skip count (its skips are not news). */
  reset(skipped: number): void {
    this.#seenSkipped = skipped;
    this.#error = undefined;
  }
}
