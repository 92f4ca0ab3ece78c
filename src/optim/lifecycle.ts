/**
 * An optimizer's life on its device: the buffers it owns, the error scopes
 * that catch GPU errors of its construction and of each step, the device
 * being lost, and disposal. Whatever makes the optimizer unusable is turned
 * into a typed error here, once, with a message that says what to do.
 *
 * No promise started here can reject unhandled, and nothing here is held by
 * the device: a disposed optimizer is garbage once its user drops it.
 *
 * @module
 */

import {
  DisposedError,
  GpuCommandError,
  GpuUnavailableError,
} from "../errors.ts";
import { deviceLostReason } from "../gpu/device.ts";

/** Owned buffers, GPU errors, device loss and disposal of one optimizer. */
export class Lifecycle {
  readonly #device: GPUDevice;
  readonly #kind: string;
  readonly #owned: GPUBuffer[] = [];
  readonly #scopes = new Set<Promise<void>>();
  #construction?: Promise<void>;
  #constructionError?: Error;
  #error?: Error;
  #disposed = false;

  /**
   * Opens the error scopes of the construction and starts watching the device.
   *
   * @param device The device.
   * @param kind The optimizer's kind, for messages.
   */
  constructor(device: GPUDevice, kind: string) {
    this.#device = device;
    this.#kind = kind;
    const lost = deviceLostReason(device);
    if (lost !== undefined) throw this.lostError(lost);
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
   * memory, an invalid binding, a buffer of another device) is thrown by the
   * next step, status or state read.
   */
  finishConstruction(): void {
    this.#construction = this.#closeScopes(
      (e) => `the GPU refused the optimizer's buffers or pipelines (${e})`,
      (error) => this.#constructionError = error,
    );
  }

  /** Undoes a constructor that threw: closes the error scopes, frees buffers. */
  abandonConstruction(): void {
    this.#device.popErrorScope().catch(() => {});
    this.#device.popErrorScope().catch(() => {});
    this.dispose();
  }

  /** Opens the error scopes of one step (closed by {@link endStep}). */
  beginStep(): void {
    this.#device.pushErrorScope("out-of-memory");
    this.#device.pushErrorScope("validation");
  }

  /**
   * Closes the scopes of {@link beginStep}; a GPU error in them becomes a
   * {@link GpuCommandError} for the next call, and `onError` hears of it.
   */
  endStep(call: number, onError: () => void): void {
    const done = this.#closeScopes(
      (e) =>
        `step call ${call} did not run: the GPU refused its commands (${e})`,
      (error) => {
        onError();
        this.#error ??= error;
      },
    );
    this.#scopes.add(done);
    done.finally(() => this.#scopes.delete(done)).catch(() => {});
  }

  /** Waits until the GPU has answered every step's error scopes. */
  async settle(): Promise<void> {
    await this.#construction;
    await Promise.all([...this.#scopes]);
  }

  #closeScopes(
    describe: (e: string) => string,
    record: (error: GpuCommandError) => void,
  ): Promise<void> {
    const validation = this.#device.popErrorScope();
    const memory = this.#device.popErrorScope();
    return Promise.all([validation, memory]).then(([v, m]) => {
      const e = m ?? v;
      if (!e) return;
      record(
        new GpuCommandError(
          `${this.#kind}: ${
            describe(`${m ? "out of memory" : "validation"}: ${e.message}`)
          }`,
        ),
      );
    }, () => {/* device lost: reported by assertUsable */});
  }

  /**
   * Throws a GPU error that has arrived: the construction's at every call
   * (the optimizer cannot work), a step's once.
   */
  throwPending(): void {
    if (this.#constructionError) throw this.#constructionError;
    const e = this.#error;
    if (e) {
      this.#error = undefined;
      throw e;
    }
  }

  /** Throws when disposed or when the device was lost or destroyed. */
  assertUsable(): void {
    if (this.#disposed) {
      throw new DisposedError(
        `${this.#kind}: this optimizer has been disposed; create a new one`,
      );
    }
    const lost = deviceLostReason(this.#device);
    if (lost !== undefined) throw this.lostError(lost);
  }

  /** The error for a lost or destroyed device. */
  lostError(reason = "destroyed or lost"): GpuUnavailableError {
    return new GpuUnavailableError(
      `${this.#kind}: the GPU device was lost (${reason}); request a new device, rebuild the optimizer and load the last checkpoint`,
    );
  }

  /**
   * Runs a readback, and turns what can go wrong meanwhile into typed
   * errors: disposal (even one that happens while it waits: its bytes are
   * then not trusted), a lost or destroyed device, a refused copy.
   */
  async read<T>(readback: () => Promise<T>): Promise<T> {
    this.assertUsable();
    let result: T;
    try {
      result = await readback();
    } catch (e) {
      this.assertUsable();
      if (e instanceof GpuCommandError) throw e;
      throw this.lostError((e as Error)?.message);
    }
    this.assertUsable();
    return result;
  }

  /** Destroys every owned buffer; later calls of {@link assertUsable} throw. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const b of this.#owned) b.destroy();
  }
}
