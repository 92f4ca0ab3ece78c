/**
 * An optimizer's life on its device: the buffers it owns, the error scopes
 * that catch GPU errors of its construction, the device being lost, and
 * disposal. Whatever makes the optimizer unusable is turned into an error
 * here, once, with a message that says what to do.
 *
 * @module
 */

import { GpuUnavailableError } from "../errors.ts";

/** Owned buffers, construction errors, device loss and disposal of one optimizer. */
export class Lifecycle {
  readonly #device: GPUDevice;
  readonly #kind: string;
  readonly #owned: GPUBuffer[] = [];
  #construction?: Promise<void>;
  #constructionError?: Error;
  #disposed = false;
  #lost?: string;

  /**
   * Opens the error scopes of the construction and watches the device.
   *
   * @param device The device.
   * @param kind The optimizer's kind, for messages.
   */
  constructor(device: GPUDevice, kind: string) {
    this.#device = device;
    this.#kind = kind;
    device.lost.then((info) => {
      this.#lost = info.message || String(info.reason);
    });
    // Buffer and pipeline errors arrive asynchronously: catch the
    // constructor's in error scopes (closed by finishConstruction).
    device.pushErrorScope("out-of-memory");
    device.pushErrorScope("validation");
  }

  /** Registers a buffer to destroy on dispose. */
  own(buffer: GPUBuffer): GPUBuffer {
    this.#owned.push(buffer);
    return buffer;
  }

  /** Every buffer owned so far. */
  get owned(): readonly GPUBuffer[] {
    return this.#owned;
  }

  /** Whether {@link dispose} ran. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /**
   * Closes the construction's error scopes. A GPU error there (out of
   * memory, an invalid binding) is thrown by {@link assertConstructed}.
   */
  finishConstruction(): void {
    const validation = this.#device.popErrorScope();
    const memory = this.#device.popErrorScope();
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
      () => {/* device lost: reported by assertUsable */},
    );
  }

  /** Undoes a constructor that threw: closes the error scopes, frees buffers. */
  abandonConstruction(): void {
    this.#device.popErrorScope().catch(() => {});
    this.#device.popErrorScope().catch(() => {});
    this.dispose();
  }

  /** Throws the construction's GPU error, if one has arrived. */
  throwConstructionError(): void {
    if (this.#constructionError) throw this.#constructionError;
  }

  /** Waits for the construction's error scopes, then throws their error if any. */
  async assertConstructed(): Promise<void> {
    await this.#construction;
    this.throwConstructionError();
  }

  /** Throws when disposed or when the device was lost. */
  assertUsable(): void {
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

  /** Destroys every owned buffer; later calls of {@link assertUsable} throw. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const b of this.#owned) b.destroy();
  }
}
