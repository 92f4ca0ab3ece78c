/**
 * Model parameters: a named, shaped tensor made with `createTensor`, so an
 * optimizer takes {@link Parameter.tensor} as it is. The kernels compute in
 * f32; a bf16 parameter (for MicroAdam's `dtype: "bf16"`) also keeps f32
 * copies of its values and gradient, which the graph widens from and narrows
 * into the bf16 tensor around every step.
 *
 * @module
 */

import type { DType } from "../core/options.ts";
import { TensorMismatchError } from "../errors.ts";
import { TENSOR_USAGE } from "../gpu/tensor_io.ts";
import { createTensor } from "../gpu/tensor_io.ts";
import type { GpuTensor } from "../gpu/tensors.ts";

/** A trainable tensor of a model. */
export class Parameter {
  /** Unique name within its model (used by optimizers and checkpoints). */
  readonly name: string;
  /** Shape, outermost first (a linear weight is `[out, in]`). */
  readonly shape: readonly number[];
  /** Element type of {@link Parameter.tensor}. */
  readonly dtype: DType;
  /** The tensor an optimizer updates (`dtype` parameters and gradients). */
  readonly tensor: GpuTensor & { dtype: DType };
  /** f32 values the kernels read: `tensor.param` itself for f32. */
  readonly value: GPUBuffer;
  /** f32 gradient the kernels write: `tensor.grad` itself for f32. */
  readonly grad: GPUBuffer;

  /**
   * Creates the tensor (and, for bf16, its f32 working copies) on `device`.
   *
   * @param device Device to allocate on.
   * @param name Unique name within the model.
   * @param shape Shape, outermost first.
   * @param init Initial values (`shape`'s element count; rounded for bf16).
   * @param dtype Element type of the optimizer's tensor.
   *
   * @example
   * ```ts
   * import { readTensor, requestDevice } from "../../mod.ts";
   * import { Parameter } from "./parameter.ts";
   * const device = await requestDevice();
   * const p = new Parameter(device, "w", [2, 2], new Float32Array([1, 2, 3, 4]), "bf16");
   * console.log(p.size, p.tensor.dtype, await readTensor(device, p.tensor)); // 4 bf16 Float32Array(4) [ 1, 2, 3, 4 ]
   * device.destroy();
   * ```
   */
  constructor(
    device: GPUDevice,
    name: string,
    shape: readonly number[],
    init: Float32Array,
    dtype: DType = "f32",
  ) {
    const size = shape.reduce((a, b) => a * b, 1);
    if (init.length !== size) {
      throw new TensorMismatchError(
        `parameter "${name}": shape [${
          shape.join(", ")
        }] has ${size} elements, got ${init.length} initial values`,
      );
    }
    this.name = name;
    this.shape = [...shape];
    this.dtype = dtype;
    this.tensor = createTensor(device, init, { name, dtype });
    if (dtype === "f32") {
      this.value = this.tensor.param;
      this.grad = this.tensor.grad;
    } else {
      const bytes = 4 * size;
      this.value = device.createBuffer({
        label: `${name} f32 value`,
        size: bytes,
        usage: TENSOR_USAGE,
      });
      this.grad = device.createBuffer({
        label: `${name} f32 grad`,
        size: bytes,
        usage: TENSOR_USAGE,
      });
    }
  }

  /** Element count. */
  get size(): number {
    return this.tensor.length;
  }

  /** Destroys its buffers. */
  destroy(): void {
    this.tensor.param.destroy();
    this.tensor.grad.destroy();
    if (this.dtype !== "f32") {
      this.value.destroy();
      this.grad.destroy();
    }
  }
}
