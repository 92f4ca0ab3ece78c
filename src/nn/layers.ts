/**
 * Modules: layers that own parameters and add their ops to a graph, in the
 * manner of `torch.nn` — {@link Linear}, {@link Activation}, {@link Sequential}
 * and the {@link mlp} built from them. A module is built once per graph
 * (training and evaluation graphs share its parameters).
 *
 * @module
 */

import type { DType } from "../core/options.ts";
import { InvalidOptionError } from "../errors.ts";
import { Random } from "../core/random.ts";
import type { Value } from "./graph.ts";
import { activation, type ActivationKind, linear } from "./ops.ts";
import { Parameter } from "./parameter.ts";

/** A layer or a model: ops on a graph plus the parameters they use. */
export interface Module {
  /** Adds this module's ops to `x`'s graph and returns its output. */
  forward(x: Value): Value;
  /** Its parameters, in a fixed order, with names unique within the model. */
  parameters(): Parameter[];
}

/** Options of {@link Linear}. */
export interface LinearOptions {
  /** Parameter name prefix: `${name}.weight`, `${name}.bias`. @default {"linear"} */
  name?: string;
  /** Add a bias. @default {true} */
  bias?: boolean;
  /** Element type of the optimizer's tensors. @default {"f32"} */
  dtype?: DType;
  /** Source of the initial values. @default {new Random(0)} */
  random?: Random;
}

/**
 * `y = x · Wᵀ + b` with `W` of shape `[out, in]`, initialized as PyTorch's
 * `nn.Linear`: weight and bias uniform in ±1/√in.
 *
 * @example
 * ```ts
 * import { requestDevice } from "../gpu/device.ts";
 * import { Linear } from "./layers.ts";
 * const device = await requestDevice();
 * const fc = new Linear(device, 784, 10, { name: "fc" });
 * console.log(fc.parameters().map((p) => `${p.name} [${p.shape}]`)); // [ "fc.weight [10,784]", "fc.bias [10]" ]
 * device.destroy();
 * ```
 */
export class Linear implements Module {
  /** Weight, `[out, in]`. */
  readonly weight: Parameter;
  /** Bias, `[out]`, when the layer has one. */
  readonly bias?: Parameter;

  /**
   * Creates the parameters on `device`.
   *
   * @param device Device to allocate on.
   * @param inFeatures Input width.
   * @param outFeatures Output width.
   * @param options Name, bias, dtype and random source.
   */
  constructor(
    device: GPUDevice,
    inFeatures: number,
    outFeatures: number,
    options: LinearOptions = {},
  ) {
    for (
      const [k, v] of [["inFeatures", inFeatures], [
        "outFeatures",
        outFeatures,
      ]] as const
    ) {
      if (!Number.isInteger(v) || v < 1) {
        throw new InvalidOptionError(
          `Linear ${k}: expected an integer >= 1, got ${v}`,
        );
      }
    }
    const name = options.name ?? "linear";
    const random = options.random ?? new Random(0);
    const bound = 1 / Math.sqrt(inFeatures);
    const uniform = (n: number) => {
      const a = new Float32Array(n);
      for (let i = 0; i < n; i++) a[i] = (2 * random.next() - 1) * bound;
      return a;
    };
    const dtype = options.dtype ?? "f32";
    this.weight = new Parameter(
      device,
      `${name}.weight`,
      [outFeatures, inFeatures],
      uniform(outFeatures * inFeatures),
      dtype,
    );
    if (options.bias ?? true) {
      this.bias = new Parameter(
        device,
        `${name}.bias`,
        [outFeatures],
        uniform(outFeatures),
        dtype,
      );
    }
  }

  /** Adds the product and bias to `x`'s graph. */
  forward(x: Value): Value {
    const g = x.graph;
    return linear(
      x,
      g.parameter(this.weight),
      this.bias && g.parameter(this.bias),
    );
  }

  /** `[weight, bias]` (or `[weight]`). */
  parameters(): Parameter[] {
    return this.bias ? [this.weight, this.bias] : [this.weight];
  }
}

/**
 * An elementwise activation layer (no parameters).
 *
 * @example
 * ```ts
 * import { Activation } from "./layers.ts";
 * console.log(new Activation("gelu").parameters().length); // 0
 * ```
 */
export class Activation implements Module {
  /** Which function. */
  readonly kind: ActivationKind;

  /** @param kind `"relu"` or `"gelu"` (tanh form). */
  constructor(kind: ActivationKind) {
    if (kind !== "relu" && kind !== "gelu") {
      throw new InvalidOptionError(
        `activation: expected "relu" or "gelu", got ${JSON.stringify(kind)}`,
      );
    }
    this.kind = kind;
  }

  /** Adds the activation to `x`'s graph. */
  forward(x: Value): Value {
    return activation(x, this.kind);
  }

  /** None. */
  parameters(): Parameter[] {
    return [];
  }
}

/**
 * Modules applied one after the other.
 *
 * @example
 * ```ts
 * import { requestDevice } from "../gpu/device.ts";
 * import { Activation, Linear, Sequential } from "./layers.ts";
 * const device = await requestDevice();
 * const net = new Sequential([new Linear(device, 4, 8, { name: "a" }), new Activation("relu"), new Linear(device, 8, 2, { name: "b" })]);
 * console.log(net.parameters().length); // 4
 * device.destroy();
 * ```
 */
export class Sequential implements Module {
  /** The modules, in order. */
  readonly modules: readonly Module[];

  /** @param modules Applied in this order. */
  constructor(modules: Module[]) {
    this.modules = [...modules];
    const seen = new Set<string>();
    for (const p of this.parameters()) {
      if (seen.has(p.name)) {
        throw new InvalidOptionError(
          `Sequential: two parameters are named "${p.name}"; give the layers distinct names`,
        );
      }
      seen.add(p.name);
    }
  }

  /** Chains the modules' ops. */
  forward(x: Value): Value {
    return this.modules.reduce((v, m) => m.forward(v), x);
  }

  /** Every module's parameters, in order. */
  parameters(): Parameter[] {
    return this.modules.flatMap((m) => m.parameters());
  }

  /** Destroys every parameter's buffers. */
  destroy(): void {
    for (const p of this.parameters()) p.destroy();
  }
}

/** Options of {@link mlp}. */
export interface MlpOptions {
  /** Widths: inputs, hidden layers…, outputs (at least two). */
  sizes: readonly number[];
  /** Activation between layers. @default {"relu"} */
  activation?: ActivationKind;
  /** Element type of the optimizer's tensors. @default {"f32"} */
  dtype?: DType;
  /** Seed of the initial values. @default {0} */
  seed?: number;
}

/**
 * A multilayer perceptron: `Linear` layers named `fc1`, `fc2`, … with an
 * activation between them (none after the last).
 *
 * @example
 * ```ts
 * import { requestDevice } from "../gpu/device.ts";
 * import { mlp } from "./layers.ts";
 * const device = await requestDevice();
 * const net = mlp(device, { sizes: [784, 256, 128, 10] });
 * console.log(net.parameters().reduce((n, p) => n + p.size, 0)); // 235146
 * device.destroy();
 * ```
 */
export function mlp(device: GPUDevice, options: MlpOptions): Sequential {
  const sizes = options.sizes;
  if (
    !Array.isArray(sizes) || sizes.length < 2 ||
    sizes.some((s) => !Number.isInteger(s) || s < 1)
  ) {
    throw new InvalidOptionError(
      `mlp sizes: expected at least two positive integers (inputs, …, outputs), got ${
        JSON.stringify(sizes)
      }`,
    );
  }
  const random = new Random(options.seed ?? 0, MODEL_INIT_STREAM);
  const modules: Module[] = [];
  for (let i = 0; i + 1 < sizes.length; i++) {
    if (i > 0) modules.push(new Activation(options.activation ?? "relu"));
    modules.push(
      new Linear(device, sizes[i], sizes[i + 1], {
        name: `fc${i + 1}`,
        dtype: options.dtype,
        random,
      }),
    );
  }
  return new Sequential(modules);
}

/** Random stream of model initialization (data order uses others). */
export const MODEL_INIT_STREAM = 1;
