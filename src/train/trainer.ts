/**
 * Trains an MLP classifier on an image data set with one of the WebGPU
 * optimizers. Each step is one command encoder: the batch gather, the
 * forward and backward passes (one compute pass) and `opt.step({ encoder })`;
 * nothing is read back but the per-batch loss totals every `log_every`
 * steps. A run is a pure function of its configuration: the weights come
 * from the seed, the data order of epoch `e` from the seed and `e`, so a
 * checkpoint needs only the tensors, the optimizer state and the position,
 * and a resumed run continues bit for bit.
 *
 * @module
 */

import { readCheckpointFile } from "../checkpoint/file.ts";
import { loadTrainingState, saveTrainingState } from "./training_state.ts";
import { Random } from "../core/random.ts";
import { CheckpointError, InvalidOptionError } from "../errors.ts";
import { type BatchInput, GpuDataset } from "../data/gpu_dataset.ts";
import { type ImageData, pixelStats } from "../data/images.ts";
import { encodeDispatch, Graph } from "../nn/graph.ts";
import { mlp, type Sequential } from "../nn/layers.ts";
import {
  type LossTotals,
  readLossTotals,
  softmaxCrossEntropy,
  type Totals,
} from "../nn/ops.ts";
import { type TrainConfig, trajectoryDifferences } from "./config.ts";
import { type AnyOptimizer, createOptimizer } from "./optimizer.ts";

/** Random stream of epoch `e`'s data order is this plus `e`. */
export const DATA_ORDER_STREAM = 0x10000;

/** A progress record, every `log_every` steps and at each epoch's end. */
export interface LogRecord {
  /** `"train"`. */
  kind: "train";
  /** Optimizer steps so far. */
  step: number;
  /** Epoch (1-based). */
  epoch: number;
  /** Mean training loss over the steps since the last record. */
  loss: number;
  /** Training accuracy over those steps. */
  accuracy: number;
  /** Learning rate of the last step. */
  lr: number;
  /** Training samples per second over those steps (wall clock). */
  samples_per_s: number;
}

/** The record of a finished epoch. */
export interface EpochRecord {
  /** `"epoch"`. */
  kind: "epoch";
  /** Epoch (1-based). */
  epoch: number;
  /** Optimizer steps so far. */
  step: number;
  /** Mean training loss over the epoch. */
  train_loss: number;
  /** Training accuracy over the epoch. */
  train_accuracy: number;
  /** Mean test loss after the epoch. */
  test_loss: number;
  /** Test accuracy after the epoch. */
  test_accuracy: number;
  /** Training time so far, seconds (evaluation and checkpoints excluded). */
  train_seconds: number;
}

/** What a run produced. */
export interface TrainResult {
  /** One record per epoch. */
  epochs: EpochRecord[];
  /** Final test loss. */
  testLoss: number;
  /** Final test accuracy in [0, 1]. */
  testAccuracy: number;
  /** Optimizer steps taken. */
  steps: number;
  /** Training samples processed. */
  samples: number;
  /** Training time, seconds (evaluation and checkpoints excluded). */
  trainSeconds: number;
  /** Training samples per second. */
  samplesPerSecond: number;
  /** Optimizer state, bytes (`stateBytes()`). */
  stateBytes: number;
  /** Model parameters. */
  paramCount: number;
  /** Whether the run stopped early (`shouldStop`). */
  interrupted: boolean;
}

/** Callbacks of {@link Trainer.train}. */
export interface TrainHooks {
  /** A progress record. */
  onLog?(record: LogRecord): void | Promise<void>;
  /** An epoch ended and was evaluated. */
  onEpoch?(record: EpochRecord): void | Promise<void>;
  /** After every step's submit (e.g. to checkpoint every N steps). */
  afterStep?(step: number): void | Promise<void>;
  /** Checked after every step; true ends the run early (the caller may save). */
  shouldStop?(): boolean;
}

const zero = (): Totals => ({ loss: 0, correct: 0, count: 0 });

function add(into: Totals, t: Totals): void {
  into.loss += t.loss;
  into.correct += t.correct;
  into.count += t.count;
}

/** The position and the host-side sums a checkpoint carries. */
interface Progress {
  step: number;
  /** Step whose totals went to slot 0 (the window restarts its slots after a read). */
  slotBase: number;
  window: Totals;
  epochTotals: Totals;
  history: EpochRecord[];
  trainSeconds: number;
  samples: number;
}

const META_FORMAT = "microadam-train/1";

// A diverged run has NaN losses, which JSON cannot hold: such numbers are
// stored as the strings "NaN", "Infinity" and "-Infinity" (no string field
// of the progress can take those values).
const NON_FINITE = new Set(["NaN", "Infinity", "-Infinity"]);

function toJson(v: unknown): unknown {
  if (typeof v === "number" && !Number.isFinite(v)) return String(v);
  if (Array.isArray(v)) return v.map(toJson);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(
      Object.entries(v).map(([k, x]) => [k, toJson(x)]),
    );
  }
  return v;
}

function fromJson(v: unknown): unknown {
  if (typeof v === "string" && NON_FINITE.has(v)) return Number(v);
  if (Array.isArray(v)) return v.map(fromJson);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(
      Object.entries(v).map(([k, x]) => [k, fromJson(x)]),
    );
  }
  return v;
}

/**
 * An MLP classifier, its data on the GPU, its optimizer, and the loop.
 *
 * @example
 * ```ts
 * import { requestDevice } from "../gpu/device.ts";
 * import { defaultConfig } from "./config.ts";
 * import { loadData } from "./data.ts";
 * import { Trainer } from "./trainer.ts";
 * const device = await requestDevice();
 * const config = { ...defaultConfig(), data: "synthetic", train_subset: 512, test_subset: 256, epochs: 1, hidden: [32], progress: false };
 * const trainer = new Trainer(device, config, await loadData(config));
 * const result = await trainer.train();
 * console.log(result.steps, result.testAccuracy > 0.2); // 4 true
 * trainer.dispose();
 * device.destroy();
 * ```
 */
export class Trainer {
  /** The device. */
  readonly device: GPUDevice;
  /** The configuration. */
  readonly config: TrainConfig;
  /** The model. */
  readonly model: Sequential;
  /** The optimizer over the model's parameters. */
  readonly optimizer: AnyOptimizer;
  /** Steps per epoch (the last batch may be partial). */
  readonly stepsPerEpoch: number;
  /** Steps of the whole run. */
  readonly totalSteps: number;
  /** What the data is. */
  readonly dataSource: string;
  readonly #train: GpuDataset;
  readonly #test: GpuDataset;
  readonly #trainGraph: Graph;
  readonly #evalGraph: Graph;
  readonly #trainInput: BatchInput;
  readonly #evalInput: BatchInput;
  readonly #trainTotals: LossTotals;
  readonly #evalTotals: LossTotals;
  #orderEpoch = -1;
  #p: Progress = {
    step: 0,
    slotBase: 0,
    window: zero(),
    epochTotals: zero(),
    history: [],
    trainSeconds: 0,
    samples: 0,
  };

  /**
   * Builds the model from `config` (sizes, activation, dtype, seed), uploads
   * `data`, records the training and evaluation graphs and creates the
   * optimizer.
   *
   * @param device Device to train on.
   * @param config The run's configuration.
   * @param data Training and test images.
   */
  constructor(device: GPUDevice, config: TrainConfig, data: ImageData) {
    if (data.train.classes !== data.test.classes) {
      throw new InvalidOptionError(
        `data: ${data.train.classes} classes in training, ${data.test.classes} in test`,
      );
    }
    this.device = device;
    this.config = config;
    this.dataSource = data.source;
    const B = config.batch_size;
    const N = data.train.count;
    this.stepsPerEpoch = Math.ceil(N / B);
    this.totalSteps = this.stepsPerEpoch * config.epochs;
    const norm = pixelStats(data.train);
    this.#train = new GpuDataset(device, data.train, norm);
    this.#test = new GpuDataset(device, data.test, norm);
    this.model = mlp(device, {
      sizes: [this.#train.features, ...config.hidden, data.train.classes],
      activation: config.activation,
      dtype: config.optimizer === "microadam" ? config.dtype : "f32",
      seed: config.seed,
    });

    this.#trainGraph = new Graph(device, { label: "train" });
    this.#trainInput = this.#train.input(this.#trainGraph, B);
    this.#trainTotals = softmaxCrossEntropy(
      this.model.forward(this.#trainInput.x),
      this.#trainInput.labels,
      this.#trainInput.batch,
      config.log_every,
    );
    this.#trainGraph.finish();

    const E = Math.min(config.eval_batch_size, data.test.count);
    this.#evalGraph = new Graph(device, { backward: false, label: "eval" });
    this.#evalInput = this.#test.input(this.#evalGraph, E);
    this.#evalTotals = softmaxCrossEntropy(
      this.model.forward(this.#evalInput.x),
      this.#evalInput.labels,
      this.#evalInput.batch,
      Math.ceil(data.test.count / E),
    );
    this.#evalGraph.finish();

    this.optimizer = createOptimizer(
      device,
      this.model.parameters().map((p) => p.tensor),
      config,
      this.totalSteps,
    );
  }

  /** Optimizer steps taken so far. */
  get step(): number {
    return this.#p.step;
  }

  /** Number of model parameters. */
  get paramCount(): number {
    return this.model.parameters().reduce((n, p) => n + p.size, 0);
  }

  /** Encodes and submits one training step (batch `step` of the run). */
  #submitStep(): void {
    const { step } = this.#p;
    const B = this.config.batch_size;
    const epoch = Math.floor(step / this.stepsPerEpoch);
    if (epoch !== this.#orderEpoch) {
      this.#train.setOrder(
        new Random(this.config.seed, DATA_ORDER_STREAM + epoch).permutation(
          this.#train.count,
        ),
      );
      this.#orderEpoch = epoch;
    }
    const start = (step % this.stepsPerEpoch) * B;
    const valid = Math.min(B, this.#train.count - start);
    this.#trainInput.select(start, valid, step - this.#p.slotBase);
    const encoder = this.device.createCommandEncoder({ label: "train step" });
    const pass = encoder.beginComputePass({ label: "forward and backward" });
    this.#trainGraph.encode(pass);
    pass.end();
    this.optimizer.step({ encoder });
    this.device.queue.submit([encoder.finish()]);
    this.#p.step = step + 1;
    this.#p.samples += valid;
  }

  /** Reads the loss totals of the steps since the last read into the window and epoch sums. */
  async #collect(): Promise<void> {
    const n = this.#p.step - this.#p.slotBase;
    const per = await readLossTotals(this.device, this.#trainTotals, n);
    for (const t of per) {
      add(this.#p.window, t);
      add(this.#p.epochTotals, t);
    }
    this.#p.slotBase = this.#p.step;
  }

  /**
   * Evaluates the model on the test set: mean loss and accuracy (one
   * submit per evaluation batch, one readback).
   */
  async evaluate(): Promise<{ loss: number; accuracy: number }> {
    const E = this.#evalInput.rows;
    const n = this.#test.count;
    const batches = Math.ceil(n / E);
    for (let b = 0; b < batches; b++) {
      this.#evalInput.select(b * E, Math.min(E, n - b * E), b);
      const encoder = this.device.createCommandEncoder({ label: "eval" });
      const pass = encoder.beginComputePass({ label: "eval forward" });
      this.#evalGraph.encode(pass);
      pass.end();
      this.device.queue.submit([encoder.finish()]);
    }
    const total = zero();
    for (
      const t of await readLossTotals(this.device, this.#evalTotals, batches)
    ) {
      add(total, t);
    }
    return {
      loss: total.loss / total.count,
      accuracy: total.correct / total.count,
    };
  }

  /**
   * Trains from the current position to the end of the last epoch (or
   * until `hooks.shouldStop()`), evaluating after every epoch.
   */
  async train(hooks: TrainHooks = {}): Promise<TrainResult> {
    const S = this.stepsPerEpoch;
    const logEvery = this.config.log_every;
    let interrupted = false;
    // A checkpoint taken at an epoch's last step, before its evaluation.
    if (
      this.#p.step > 0 && this.#p.step % S === 0 &&
      this.#p.history.length < this.#p.step / S
    ) {
      await this.#endEpoch(hooks);
    }
    // Training time is wall time between log points, less the time spent
    // in hooks (checkpoints) and evaluations, which shift the window start.
    let windowStart = performance.now();
    let windowSamples = 0;
    const excluded = async (f: () => unknown) => {
      const t0 = performance.now();
      await f();
      windowStart += performance.now() - t0;
    };
    while (this.#p.step < this.totalSteps) {
      const before = this.#p.samples;
      this.#submitStep();
      windowSamples += this.#p.samples - before;
      const step = this.#p.step;
      const epochEnd = step % S === 0;
      // Log windows end at multiples of log_every and at epoch ends, so the
      // slot table (log_every entries) never overflows.
      if (step % logEvery === 0 || epochEnd) {
        await this.#collect();
        const seconds = (performance.now() - windowStart) / 1000;
        this.#p.trainSeconds += seconds;
        const w = this.#p.window;
        this.#p.window = zero();
        await excluded(() =>
          hooks.onLog?.({
            kind: "train",
            step,
            epoch: Math.ceil(step / S),
            loss: w.loss / w.count,
            accuracy: w.correct / w.count,
            lr: this.optimizer.currentLr(),
            samples_per_s: windowSamples / seconds,
          })
        );
        windowSamples = 0;
        windowStart = performance.now();
      }
      if (hooks.afterStep) await excluded(() => hooks.afterStep!(step));
      if (epochEnd) await excluded(() => this.#endEpoch(hooks));
      if (hooks.shouldStop?.() && this.#p.step < this.totalSteps) {
        // The steps since the last log point count as training time too.
        await this.#collect();
        this.#p.trainSeconds += (performance.now() - windowStart) / 1000;
        interrupted = true;
        break;
      }
    }
    const last = this.#p.history.at(-1);
    const test = last && last.step === this.#p.step
      ? { loss: last.test_loss, accuracy: last.test_accuracy }
      : await this.evaluate();
    return {
      epochs: [...this.#p.history],
      testLoss: test.loss,
      testAccuracy: test.accuracy,
      steps: this.#p.step,
      samples: this.#p.samples,
      trainSeconds: this.#p.trainSeconds,
      samplesPerSecond: this.#p.samples / this.#p.trainSeconds,
      stateBytes: this.optimizer.stateBytes(),
      paramCount: this.paramCount,
      interrupted,
    };
  }

  async #endEpoch(hooks: TrainHooks): Promise<void> {
    await this.#collect();
    const test = await this.evaluate();
    const e = this.#p.epochTotals;
    const record: EpochRecord = {
      kind: "epoch",
      epoch: this.#p.step / this.stepsPerEpoch,
      step: this.#p.step,
      train_loss: e.loss / e.count,
      train_accuracy: e.correct / e.count,
      test_loss: test.loss,
      test_accuracy: test.accuracy,
      train_seconds: this.#p.trainSeconds,
    };
    this.#p.history.push(record);
    this.#p.epochTotals = zero();
    await hooks.onEpoch?.(record);
  }

  /**
   * Saves the run (parameters, optimizer state, position, running sums) to
   * `path` in one atomic file; `extra` is stored beside it and given back by
   * {@link Trainer.restore}. Waits for the submitted steps.
   */
  async save(path: string, extra: Record<string, unknown> = {}): Promise<void> {
    await this.#collect();
    await saveTrainingState(path, {
      params: this.model.parameters().map((p) => p.tensor),
      optimizer: this.optimizer,
      meta: {
        format: META_FORMAT,
        config: { ...this.config },
        progress: toJson(this.#p),
        extra,
      },
    });
  }

  /**
   * Continues the run saved at `path`: loads the parameters, the optimizer
   * state and the position. The configuration must match the saved one in
   * every key that shapes the training (optimizer, lr, sizes, seed, data, …).
   *
   * @throws {CheckpointError} If the file is not a training checkpoint of
   * this kind, or the configurations differ (naming the keys).
   */
  async restore(path: string): Promise<Record<string, unknown>> {
    const { meta } = await readCheckpointFile(path);
    if (!meta || meta.format !== META_FORMAT) {
      throw new CheckpointError(
        `${path}: not a training checkpoint of train.ts (its metadata format is ${
          JSON.stringify(meta?.format)
        }, expected "${META_FORMAT}")`,
      );
    }
    const saved = meta.config as TrainConfig;
    const diff = trajectoryDifferences(saved, this.config);
    if (diff.length) {
      throw new CheckpointError(
        `${path}: the run was saved with other settings: ${
          diff.map((k) =>
            `${k} ${JSON.stringify(saved[k])} (now ${
              JSON.stringify(this.config[k])
            })`
          ).join(", ")
        }; resume with the same settings`,
      );
    }
    await loadTrainingState(path, {
      params: this.model.parameters().map((p) => p.tensor),
      optimizer: this.optimizer,
    });
    this.#p = fromJson(meta.progress) as Progress;
    this.#orderEpoch = -1;
    return (meta.extra ?? {}) as Record<string, unknown>;
  }

  /**
   * Times `steps` training steps with GPU timestamps: the model's forward
   * and backward pass and the optimizer's step, each in its own pass.
   * Returns the median milliseconds of each (they are real steps: the model
   * and the optimizer move on).
   */
  async timeSteps(
    steps: number,
  ): Promise<{ modelMs: number; optimizerMs: number }> {
    if (!this.device.features.has("timestamp-query")) {
      throw new InvalidOptionError(
        "timeSteps needs the timestamp-query feature, which this device lacks",
      );
    }
    const querySet = this.device.createQuerySet({
      type: "timestamp",
      count: 4 * steps,
    });
    const resolve = this.device.createBuffer({
      size: 32 * steps,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const read = this.device.createBuffer({
      size: 32 * steps,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    try {
      for (let i = 0; i < steps; i++) {
        const { step } = this.#p;
        const B = this.config.batch_size;
        const start = (step % this.stepsPerEpoch) * B;
        this.#trainInput.select(
          start,
          Math.min(B, this.#train.count - start),
          0,
        );
        const encoder = this.device.createCommandEncoder();
        const pass = encoder.beginComputePass({
          timestampWrites: {
            querySet,
            beginningOfPassWriteIndex: 4 * i,
            endOfPassWriteIndex: 4 * i + 1,
          },
        });
        for (const d of this.#trainGraph.forwardDispatches) {
          encodeDispatch(pass, d);
        }
        for (const d of this.#trainGraph.backwardDispatches) {
          encodeDispatch(pass, d);
        }
        pass.end();
        this.optimizer.step({
          encoder,
          timestampWrites: {
            querySet,
            beginningOfPassWriteIndex: 4 * i + 2,
            endOfPassWriteIndex: 4 * i + 3,
          },
        });
        if (i === steps - 1) {
          encoder.resolveQuerySet(querySet, 0, 4 * steps, resolve, 0);
          encoder.copyBufferToBuffer(resolve, 0, read, 0, 32 * steps);
        }
        this.device.queue.submit([encoder.finish()]);
        this.#p.step = step + 1;
      }
      this.#p.slotBase = this.#p.step;
      await read.mapAsync(GPUMapMode.READ);
      const t = new BigUint64Array(read.getMappedRange().slice(0));
      read.unmap();
      const model: number[] = [];
      const opt: number[] = [];
      for (let i = 0; i < steps; i++) {
        model.push(Number(t[4 * i + 1] - t[4 * i]) / 1e6);
        opt.push(Number(t[4 * i + 3] - t[4 * i + 2]) / 1e6);
      }
      const median = (a: number[]) =>
        a.sort((x, y) => x - y)[Math.floor(a.length / 2)];
      return { modelMs: median(model), optimizerMs: median(opt) };
    } finally {
      querySet.destroy();
      resolve.destroy();
      read.destroy();
    }
  }

  /** Frees the model, the data, the graphs and the optimizer. */
  dispose(): void {
    this.optimizer.dispose();
    this.#trainGraph.dispose();
    this.#evalGraph.dispose();
    this.model.destroy();
    this.#train.destroy();
    this.#test.destroy();
  }
}
