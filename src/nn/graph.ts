/**
 * A static computation graph on the GPU, recorded once and replayed every
 * step: ops append their forward dispatches (pipelines and bind groups built
 * up front, so a step only encodes), and {@link Graph.finish} derives the
 * backward dispatches by walking the ops in reverse. Shapes are fixed when
 * the graph is built, as in a compiled training step.
 *
 * Gradients accumulate where a value feeds several ops: the first backward
 * contribution to a gradient (in reverse order) overwrites it, later ones add
 * to it, so no buffer is ever zeroed and a value used once costs nothing
 * extra. New layers (embedding, layer norm, attention) are new ops: a
 * forward dispatch list and a backward function, nothing else changes.
 *
 * @module
 */

import { bindBuffers } from "../gpu/buffers.ts";
import { dispatchSize } from "../gpu/kernels.ts";
import { InvalidOptionError, TensorMismatchError } from "../errors.ts";
import type { Parameter } from "./parameter.ts";
import { LENGTH, nnPipeline, type Struct } from "./kernels.ts";

/** One recorded compute dispatch. */
export interface Dispatch {
  /** Label for debugging and profiles. */
  label: string;
  /** The pipeline. */
  pipeline: GPUComputePipeline;
  /** Its bind group 0. */
  bindGroup: GPUBindGroup;
  /** Workgroup counts (x, y, z). */
  workgroups: readonly [number, number, number];
}

/** Where an op writes the gradient of one of its inputs. */
export interface GradTarget {
  /** The gradient buffer (f32, the input's shape). */
  buffer: GPUBuffer;
  /** Add to the buffer (another op already wrote this gradient) instead of overwriting it. */
  accumulate: boolean;
}

/** What an op's backward function may ask for. */
export interface BackwardContext {
  /** The gradient of one of the op's outputs, or undefined when nothing downstream needs it. */
  outputGrad(value: Value): GPUBuffer | undefined;
  /** Where to write an input's gradient, or undefined when that input needs none. */
  inputGrad(value: Value): GradTarget | undefined;
}

/** An op as recorded in a graph. */
export interface OpSpec {
  /** Name for errors and labels. */
  label: string;
  /** Dispatches computing the outputs. */
  forward: Dispatch[];
  /**
   * Dispatches computing the inputs' gradients from the outputs'. Called
   * once, by {@link Graph.finish}, in reverse op order.
   */
  backward?: (ctx: BackwardContext) => Dispatch[];
}

/** An f32 tensor of a graph: its values and, when needed, its gradient. */
export class Value {
  /** The graph it belongs to. */
  readonly graph: Graph;
  /** Shape, outermost first (row-major). */
  readonly shape: readonly number[];
  /** Buffer of the values. */
  readonly data: GPUBuffer;
  /** Whether a gradient flows back into it (it depends on a parameter). */
  readonly requiresGrad: boolean;
  #grad?: GPUBuffer;

  /**
   * Wraps a buffer; use {@link Graph.value} or {@link Graph.parameter}.
   *
   * @param graph Owning graph.
   * @param shape Shape, outermost first.
   * @param data Buffer of at least `4 · size` bytes.
   * @param requiresGrad Whether gradients flow into it.
   * @param grad A gradient buffer that already exists (a parameter's).
   */
  constructor(
    graph: Graph,
    shape: readonly number[],
    data: GPUBuffer,
    requiresGrad: boolean,
    grad?: GPUBuffer,
  ) {
    this.graph = graph;
    this.shape = shape;
    this.data = data;
    this.requiresGrad = requiresGrad;
    this.#grad = grad;
  }

  /** Element count. */
  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** The gradient buffer, created on first use. */
  get grad(): GPUBuffer {
    return this.#grad ??= this.graph.buffer(4 * this.size, "grad");
  }
}

/** Options of a {@link Graph}. */
export interface GraphOptions {
  /** Build the backward pass (a training graph). @default {true} */
  backward?: boolean;
  /** Label prefix of the buffers it creates. @default {"graph"} */
  label?: string;
}

const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
  GPUBufferUsage.COPY_DST;

/**
 * A recorded forward (and backward) computation. Build it with ops
 * (`src/nn/ops.ts`) and modules (`src/nn/layers.ts`), call
 * {@link Graph.finish}, then {@link Graph.encode} it into a compute pass
 * every step.
 *
 * @example
 * ```ts
 * import { requestDevice } from "../gpu/device.ts";
 * import { Graph } from "./graph.ts";
 * import { activation } from "./ops.ts";
 * const device = await requestDevice();
 * const g = new Graph(device, { backward: false });
 * const x = g.value([2, 2]);
 * device.queue.writeBuffer(x.data, 0, new Float32Array([-1, 2, -3, 4]));
 * const y = activation(x, "relu");
 * g.finish();
 * const enc = device.createCommandEncoder();
 * const pass = enc.beginComputePass();
 * g.encode(pass);
 * pass.end();
 * device.queue.submit([enc.finish()]);
 * const read = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
 * const copy = device.createCommandEncoder();
 * copy.copyBufferToBuffer(y.data, 0, read, 0, 16);
 * device.queue.submit([copy.finish()]);
 * await read.mapAsync(GPUMapMode.READ);
 * console.log(new Float32Array(read.getMappedRange())); // Float32Array(4) [ 0, 2, 0, 4 ]
 * device.destroy();
 * ```
 */
export class Graph {
  /** The device of every buffer and pipeline. */
  readonly device: GPUDevice;
  /** Whether {@link Graph.finish} builds a backward pass. */
  readonly backward: boolean;
  readonly #label: string;
  readonly #owned: GPUBuffer[] = [];
  readonly #ops: OpSpec[] = [];
  readonly #prologue: Dispatch[] = [];
  readonly #epilogue: Dispatch[] = [];
  readonly #params = new Map<Parameter, Value>();
  #forward: Dispatch[] = [];
  #backwardDispatches: Dispatch[] = [];
  #finished = false;

  /**
   * An empty graph.
   *
   * @param device The device to run on.
   * @param options Whether to build a backward pass.
   */
  constructor(device: GPUDevice, options: GraphOptions = {}) {
    this.device = device;
    this.backward = options.backward ?? true;
    this.#label = options.label ?? "graph";
  }

  /** A storage buffer owned (and destroyed) by the graph. */
  buffer(bytes: number, label: string): GPUBuffer {
    const b = this.device.createBuffer({
      label: `${this.#label} ${label}`,
      size: Math.max(4, Math.ceil(bytes / 4) * 4),
      usage: STORAGE,
    });
    this.#owned.push(b);
    return b;
  }

  /** A uniform buffer holding `values`, owned by the graph. */
  uniform<F extends string>(
    struct: Struct<F>,
    values: Record<F, number>,
  ): GPUBuffer {
    const b = this.device.createBuffer({
      label: `${this.#label} ${struct.name}`,
      size: struct.byteLength,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    this.device.queue.writeBuffer(b, 0, struct.pack(values));
    this.#owned.push(b);
    return b;
  }

  /** A new f32 value of `shape` (not requiring a gradient unless said). */
  value(
    shape: readonly number[],
    options: { requiresGrad?: boolean; label?: string } = {},
  ): Value {
    this.#assertOpen();
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 1) {
        throw new TensorMismatchError(
          `value shape: expected positive integer dimensions, got [${
            shape.join(", ")
          }]`,
        );
      }
    }
    const size = shape.reduce((a, b) => a * b, 1);
    return new Value(
      this,
      [...shape],
      this.buffer(4 * size, options.label ?? "value"),
      (options.requiresGrad ?? false) && this.backward,
    );
  }

  /**
   * The graph's value of a parameter: its f32 values and gradient. A bf16
   * parameter is widened to f32 at the start of every pass and, in a
   * training graph, its f32 gradient rounded to bf16 at the end.
   */
  parameter(p: Parameter): Value {
    let v = this.#params.get(p);
    if (v) return v;
    this.#assertOpen();
    v = new Value(this, p.shape, p.value, this.backward, p.grad);
    this.#params.set(p, v);
    if (p.dtype === "bf16") {
      this.#prologue.push(
        this.#cast("bf16Widen", p.tensor.param, p.value, p.size, true),
      );
      if (this.backward) {
        this.#epilogue.push(
          this.#cast("bf16Narrow", p.grad, p.tensor.grad, p.size, false),
        );
      }
    }
    return v;
  }

  /** Bind group 0 of `pipeline` with `buffers` at bindings 0, 1, … */
  bindGroup(pipeline: GPUComputePipeline, buffers: GPUBuffer[]): GPUBindGroup {
    return bindBuffers(this.device, pipeline.getBindGroupLayout(0), buffers);
  }

  /** Workgroup counts for `count` threads in groups of `perGroup`, folded past the per-dimension limit. */
  grid(count: number, perGroup = 256): [number, number, number] {
    const [x, y] = dispatchSize(
      Math.ceil(count / perGroup),
      this.device.limits.maxComputeWorkgroupsPerDimension,
    );
    return [x, y, 1];
  }

  /** Records an op. */
  add(op: OpSpec): void {
    this.#assertOpen();
    this.#ops.push(op);
  }

  /**
   * Ends recording and builds the backward pass: every op's backward
   * function, last op first, with gradients overwritten by their first
   * writer and accumulated by the others.
   */
  finish(): void {
    this.#assertOpen();
    this.#finished = true;
    this.#forward = [...this.#prologue, ...this.#ops.flatMap((o) => o.forward)];
    if (!this.backward) return;
    const written = new Set<Value>();
    const ctx: BackwardContext = {
      outputGrad: (v) => written.has(v) ? v.grad : undefined,
      inputGrad: (v) => {
        if (!v.requiresGrad) return undefined;
        const accumulate = written.has(v);
        written.add(v);
        return { buffer: v.grad, accumulate };
      },
    };
    const dispatches: Dispatch[] = [];
    for (let i = this.#ops.length - 1; i >= 0; i--) {
      const op = this.#ops[i];
      if (op.backward) dispatches.push(...op.backward(ctx));
    }
    for (const [p, v] of this.#params) {
      if (!written.has(v)) {
        throw new InvalidOptionError(
          `parameter "${p.name}" gets no gradient: no path from it to the loss`,
        );
      }
    }
    this.#backwardDispatches = [...dispatches, ...this.#epilogue];
  }

  /** The forward dispatches (after {@link Graph.finish}). */
  get forwardDispatches(): readonly Dispatch[] {
    this.#assertFinished();
    return this.#forward;
  }

  /** The backward dispatches (after {@link Graph.finish}; empty without a backward pass). */
  get backwardDispatches(): readonly Dispatch[] {
    this.#assertFinished();
    return this.#backwardDispatches;
  }

  /** Encodes the forward pass and, in a training graph, the backward pass. */
  encode(pass: GPUComputePassEncoder): void {
    this.#assertFinished();
    for (const d of this.#forward) encodeDispatch(pass, d);
    for (const d of this.#backwardDispatches) encodeDispatch(pass, d);
  }

  /** Destroys the buffers the graph created (not the parameters'). */
  dispose(): void {
    for (const b of this.#owned) b.destroy();
    this.#owned.length = 0;
  }

  #cast(
    kernel: "bf16Widen" | "bf16Narrow",
    from: GPUBuffer,
    to: GPUBuffer,
    length: number,
    widen: boolean,
  ): Dispatch {
    const pipeline = nnPipeline(this.device, kernel);
    return {
      label: kernel,
      pipeline,
      bindGroup: this.bindGroup(pipeline, [
        this.uniform(LENGTH, { length }),
        from,
        to,
      ]),
      workgroups: this.grid(widen ? length : Math.ceil(length / 2)),
    };
  }

  #assertOpen(): void {
    if (this.#finished) {
      throw new InvalidOptionError(
        "this graph is finished: ops can no longer be added",
      );
    }
  }

  #assertFinished(): void {
    if (!this.#finished) {
      throw new InvalidOptionError("call graph.finish() before encoding it");
    }
  }
}

/** Encodes one dispatch into a compute pass. */
export function encodeDispatch(
  pass: GPUComputePassEncoder,
  d: Dispatch,
): void {
  pass.setPipeline(d.pipeline);
  pass.setBindGroup(0, d.bindGroup);
  pass.dispatchWorkgroups(...d.workgroups);
}
