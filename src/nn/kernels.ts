/**
 * The WGSL kernels of the model building blocks (`kernels/nn/`), assembled
 * and compiled into pipelines cached per device, and the uniform structs
 * they share with TypeScript. A struct is declared once, here: its WGSL
 * declaration is emitted ahead of the kernel source and {@link Struct.pack}
 * writes its bytes, so the two cannot drift apart.
 *
 * @module
 */

import matmul from "../../kernels/nn/matmul.wgsl" with { type: "text" };
import matmulVec4 from "../../kernels/nn/matmul_vec4.wgsl" with {
  type: "text",
};
import biasAdd from "../../kernels/nn/bias_add.wgsl" with { type: "text" };
import activation from "../../kernels/nn/activation.wgsl" with {
  type: "text",
};
import activationForward from "../../kernels/nn/activation_forward.wgsl" with {
  type: "text",
};
import activationBackward from "../../kernels/nn/activation_backward.wgsl" with {
  type: "text",
};
import columnSum from "../../kernels/nn/column_sum.wgsl" with {
  type: "text",
};
import softmaxCrossEntropy from "../../kernels/nn/softmax_cross_entropy.wgsl" with {
  type: "text",
};
import lossSum from "../../kernels/nn/loss_sum.wgsl" with { type: "text" };
import gatherRows from "../../kernels/nn/gather_rows.wgsl" with {
  type: "text",
};
import bf16Narrow from "../../kernels/nn/bf16_narrow.wgsl" with {
  type: "text",
};
import bf16Widen from "../../kernels/nn/bf16_widen.wgsl" with {
  type: "text",
};
import numeric from "../../kernels/numeric.wgsl" with { type: "text" };
import grid from "../../kernels/grid.wgsl" with { type: "text" };
import elementwise from "../../kernels/elementwise.wgsl" with {
  type: "text",
};
import { InvalidOptionError } from "../errors.ts";
import { cachedPipeline } from "../gpu/kernels.ts";

/** Field types a uniform struct may hold (each 4 bytes). */
export type FieldType = "u32" | "f32";

/**
 * A uniform struct shared by TypeScript and WGSL: 4-byte fields in the order
 * given, padded to 16 bytes as uniform buffers require.
 */
export class Struct<F extends string> {
  /** The struct's WGSL name. */
  readonly name: string;
  /** Field names and types, in memory order. */
  readonly fields: readonly (readonly [F, FieldType])[];

  /**
   * Declares a struct.
   *
   * @param name WGSL struct name.
   * @param fields `[name, type]` pairs in memory order.
   */
  constructor(name: string, fields: readonly (readonly [F, FieldType])[]) {
    this.name = name;
    this.fields = fields;
  }

  /** Bytes of one instance (a multiple of 16). */
  get byteLength(): number {
    return Math.ceil(this.fields.length / 4) * 16;
  }

  /** The WGSL declaration. */
  get wgsl(): string {
    const body = this.fields.map(([n, t]) => `  ${n}: ${t},`).join("\n");
    return `struct ${this.name} {\n${body}\n}`;
  }

  /**
   * The bytes of an instance; every field must be given.
   *
   * @example
   * ```ts
   * import { Struct } from "./kernels.ts";
   * const s = new Struct("Pair", [["n", "u32"], ["scale", "f32"]] as const);
   * console.log(s.wgsl.includes("scale: f32"), s.pack({ n: 3, scale: 0.5 }).byteLength); // true 16
   * ```
   */
  pack(values: Record<F, number>): Uint8Array<ArrayBuffer> {
    const out = new ArrayBuffer(this.byteLength);
    const u32 = new Uint32Array(out);
    const f32 = new Float32Array(out);
    this.fields.forEach(([n, t], i) => {
      const v = values[n];
      if (typeof v !== "number" || !Number.isFinite(v)) {
        throw new InvalidOptionError(
          `${this.name}.${n}: expected a finite number, got ${String(v)}`,
        );
      }
      if (t === "u32") {
        if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
          throw new InvalidOptionError(
            `${this.name}.${n}: expected a u32, got ${v}`,
          );
        }
        u32[i] = v;
      } else {
        f32[i] = v;
      }
    });
    return new Uint8Array(out);
  }
}

/** Dimensions of a (batched) matrix product; see `kernels/nn/matmul.wgsl`. */
export const MATMUL_DIMS = new Struct(
  "MatmulDims",
  [
    ["m", "u32"],
    ["n", "u32"],
    ["k", "u32"],
    ["lda", "u32"],
    ["ldb", "u32"],
    ["ldc", "u32"],
    ["stride_a", "u32"],
    ["stride_b", "u32"],
    ["stride_c", "u32"],
  ] as const,
);

/** A rows × cols matrix, for the elementwise and row/column kernels. */
export const MATRIX_DIMS = new Struct(
  "MatrixDims",
  [
    ["rows", "u32"],
    ["cols", "u32"],
  ] as const,
);

/**
 * The minibatch a data loader selected, written before each submit:
 * `valid` rows starting at `start` in the order; rows past `valid` (a last,
 * partial batch) are zero and ignored by the loss. `slot` is where the
 * loss writes this batch's totals, so that the host can read many batches'
 * totals at once and sum them in order.
 */
export const BATCH = new Struct(
  "Batch",
  [
    ["start", "u32"],
    ["valid", "u32"],
    ["slot", "u32"],
  ] as const,
);

/** How a data set's u8 rows become f32 inputs: `(byte / 255 − mean) · inv_std`. */
export const GATHER_DIMS = new Struct(
  "GatherDims",
  [
    ["rows", "u32"],
    ["features", "u32"],
    ["count", "u32"],
    ["mean", "f32"],
    ["inv_std", "f32"],
  ] as const,
);

/** Element count of a flat tensor. */
export const LENGTH = new Struct("Length", [["length", "u32"]] as const);

/** The kernels of `kernels/nn/`. */
export type NnKernel =
  | "matmul"
  | "matmulVec4"
  | "biasAdd"
  | "activationForward"
  | "activationBackward"
  | "columnSum"
  | "softmaxCrossEntropy"
  | "lossSum"
  | "gatherRows"
  | "bf16Narrow"
  | "bf16Widen";

// What each kernel is assembled from: structs first, then shared snippets,
// then its own file.
const SOURCES: Record<NnKernel, (string | Struct<string>)[]> = {
  matmul: [MATMUL_DIMS, matmul],
  matmulVec4: [MATMUL_DIMS, matmulVec4],
  biasAdd: [MATRIX_DIMS, biasAdd, elementwise],
  activationForward: [LENGTH, activation, activationForward, elementwise],
  activationBackward: [LENGTH, activation, activationBackward, elementwise],
  columnSum: [MATRIX_DIMS, columnSum],
  softmaxCrossEntropy: [MATRIX_DIMS, BATCH, softmaxCrossEntropy],
  lossSum: [BATCH, lossSum],
  gatherRows: [GATHER_DIMS, BATCH, gatherRows, elementwise],
  bf16Narrow: [LENGTH, numeric, bf16Narrow, elementwise],
  bf16Widen: [LENGTH, bf16Widen, elementwise],
};

/**
 * The full WGSL source of a kernel: its structs, the snippets it shares, its
 * own file.
 *
 * @example
 * ```ts
 * import { nnKernelSource } from "./kernels.ts";
 * console.log(nnKernelSource("matmul").includes("struct MatmulDims")); // true
 * ```
 */
export function nnKernelSource(name: NnKernel): string {
  // grid.wgsl: the workgroup index of a dispatch folded past 65535, shared
  // with the optimizers' kernels.
  return [grid, ...SOURCES[name]].map((s) => typeof s === "string" ? s : s.wgsl)
    .join("\n");
}

/**
 * The compute pipeline of `name` with these override constants, compiled
 * once per device (entry point `main`).
 *
 * @example
 * ```ts
 * import { requestDevice } from "../gpu/device.ts";
 * import { nnPipeline } from "./kernels.ts";
 * const device = await requestDevice();
 * const p = nnPipeline(device, "matmul", { TRANS_B: 1 });
 * console.log(p === nnPipeline(device, "matmul", { TRANS_B: 1 })); // true
 * device.destroy();
 * ```
 */
export function nnPipeline(
  device: GPUDevice,
  name: NnKernel,
  constants: Record<string, number> = {},
): GPUComputePipeline {
  return cachedPipeline(
    device,
    `nn/${name}:${JSON.stringify(constants)}`,
    () =>
      device.createComputePipeline({
        label: name,
        layout: "auto",
        compute: {
          module: device.createShaderModule({
            label: name,
            code: nnKernelSource(name),
          }),
          entryPoint: "main",
          constants,
        },
      }),
  );
}
