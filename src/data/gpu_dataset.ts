/**
 * An image data set uploaded to the GPU once (bytes packed four per u32,
 * labels as u32), with a sample order that the host replaces once per epoch
 * and minibatches gathered on the GPU by index: the only per-step traffic is
 * the 8-byte batch uniform (`start`, `valid`) written before each submit.
 *
 * @module
 */

import { DatasetError } from "../errors.ts";
import type { Graph, Value } from "../nn/graph.ts";
import { BATCH, GATHER_DIMS, nnPipeline } from "../nn/kernels.ts";
import type { ImageSet } from "./images.ts";

/** Input normalization: `(byte / 255 − mean) / std`. */
export interface Normalization {
  /** Mean of the scaled pixels. */
  mean: number;
  /** Their standard deviation. */
  std: number;
}

/** A minibatch input of one graph. */
export interface BatchInput {
  /** The gathered inputs, `[rows, features]` f32. */
  x: Value;
  /** The gathered labels, one u32 per row. */
  labels: GPUBuffer;
  /** The graph's `Batch` uniform (`start`, `valid`), read by the loss too. */
  batch: GPUBuffer;
  /** Rows per batch. */
  rows: number;
  /**
   * Selects the batch of the next submit: `valid` samples from position
   * `start` of the current order (`valid < rows` for a last, partial batch),
   * its loss totals going to entry `slot` of the loss's table.
   */
  select(start: number, valid: number, slot?: number): void;
}

const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;

/**
 * A data set on the GPU.
 *
 * @example
 * ```ts
 * import { requestDevice } from "../gpu/device.ts";
 * import { GpuDataset } from "./gpu_dataset.ts";
 * import { syntheticImageData } from "./synthetic.ts";
 * const device = await requestDevice();
 * const { train } = syntheticImageData({ train: 64, test: 1 });
 * const data = new GpuDataset(device, train, { mean: 0.2, std: 0.3 });
 * console.log(data.count, data.features); // 64 784
 * data.destroy();
 * device.destroy();
 * ```
 */
export class GpuDataset {
  /** The device holding the buffers. */
  readonly device: GPUDevice;
  /** Number of samples. */
  readonly count: number;
  /** Features per sample (pixels). */
  readonly features: number;
  /** Number of classes. */
  readonly classes: number;
  /** The input normalization. */
  readonly normalization: Normalization;
  readonly #images: GPUBuffer;
  readonly #labels: GPUBuffer;
  readonly #order: GPUBuffer;

  /**
   * Uploads `set`; the order starts as 0, 1, 2, …
   *
   * @param device Device to upload to.
   * @param set The images and labels.
   * @param normalization Input normalization.
   */
  constructor(device: GPUDevice, set: ImageSet, normalization: Normalization) {
    const bytes = set.images.byteLength;
    const limit = device.limits.maxStorageBufferBindingSize;
    if (bytes > limit) {
      throw new DatasetError(
        `data set of ${bytes} bytes exceeds the device's largest storage binding (${limit} bytes); use fewer samples`,
      );
    }
    this.device = device;
    this.count = set.count;
    this.features = set.rows * set.cols;
    this.classes = set.classes;
    this.normalization = normalization;
    const padded = new Uint8Array(Math.max(4, Math.ceil(bytes / 4) * 4));
    padded.set(set.images);
    this.#images = device.createBuffer({
      label: "dataset images",
      size: padded.byteLength,
      usage: STORAGE,
    });
    device.queue.writeBuffer(this.#images, 0, padded);
    this.#labels = device.createBuffer({
      label: "dataset labels",
      size: 4 * set.count,
      usage: STORAGE,
    });
    device.queue.writeBuffer(this.#labels, 0, Uint32Array.from(set.labels));
    this.#order = device.createBuffer({
      label: "dataset order",
      size: 4 * set.count,
      usage: STORAGE,
    });
    this.setOrder(Uint32Array.from({ length: set.count }, (_, i) => i));
  }

  /** Replaces the sample order (a permutation of 0..count-1, or any indices below count). */
  setOrder(order: Uint32Array<ArrayBuffer>): void {
    if (order.length !== this.count) {
      throw new DatasetError(
        `setOrder: expected ${this.count} indices, got ${order.length}`,
      );
    }
    this.device.queue.writeBuffer(this.#order, 0, order);
  }

  /**
   * Adds the gather op to `graph`: a `[rows, features]` input and its labels,
   * refilled from the current order by {@link BatchInput.select}.
   */
  input(graph: Graph, rows: number): BatchInput {
    const x = graph.value([rows, this.features], { label: "input" });
    const labels = graph.buffer(4 * rows, "labels");
    const batch = graph.uniform(BATCH, { start: 0, valid: rows, slot: 0 });
    const pipeline = nnPipeline(graph.device, "gatherRows");
    const dims = graph.uniform(GATHER_DIMS, {
      rows,
      features: this.features,
      count: this.count,
      mean: this.normalization.mean,
      inv_std: 1 / this.normalization.std,
    });
    graph.add({
      label: "gather batch",
      forward: [{
        label: "gather batch",
        pipeline,
        bindGroup: graph.bindGroup(pipeline, [
          dims,
          batch,
          this.#images,
          this.#labels,
          this.#order,
          x.data,
          labels,
        ]),
        workgroups: graph.grid(rows * this.features),
      }],
    });
    const count = this.count;
    const queue = graph.device.queue;
    return {
      x,
      labels,
      batch,
      rows,
      select(start: number, valid: number, slot = 0) {
        if (
          !Number.isInteger(start) || !Number.isInteger(valid) || valid < 1 ||
          valid > rows || start < 0 || start + valid > count
        ) {
          throw new DatasetError(
            `select: batch [${start}, ${
              start + valid
            }) of ${valid} rows does not fit ${rows} rows and ${count} samples`,
          );
        }
        queue.writeBuffer(batch, 0, BATCH.pack({ start, valid, slot }));
      },
    };
  }

  /** Frees the buffers. */
  destroy(): void {
    this.#images.destroy();
    this.#labels.destroy();
    this.#order.destroy();
  }
}
