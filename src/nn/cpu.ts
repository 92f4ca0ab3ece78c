/**
 * The model building blocks on the CPU, in f64 or f32: the reference the
 * WebGPU kernels are tested against, and, in f64, the subject of the
 * finite-difference checks. Same conventions as the GPU ops: row-major
 * matrices, linear weights `[out, in]`, GELU in its tanh form with the same
 * clamp, softmax cross-entropy averaged over the valid rows.
 *
 * @module
 */

import { InvalidOptionError, TensorMismatchError } from "../errors.ts";
import type { ActivationKind } from "./ops.ts";

/** A float array of either width. */
export type FloatArray = Float32Array | Float64Array;
/** The constructor of one. */
export type FloatArrayType = Float32ArrayConstructor | Float64ArrayConstructor;

/** Dimensions and transposes of `C = op(A) · op(B)` (see `MatmulSpec` in `./ops.ts`). */
export interface MatmulShape {
  /** Rows of op(A) and C. */
  m: number;
  /** Columns of op(B) and C. */
  n: number;
  /** Inner dimension. */
  k: number;
  /** Use Aᵀ (A stored `k × m`). @default {false} */
  transA?: boolean;
  /** Use Bᵀ (B stored `n × k`). @default {false} */
  transB?: boolean;
}

/**
 * `out (=|+=) op(a) · op(b)`, summing over k in order.
 *
 * @example
 * ```ts
 * import { matmulCpu } from "./cpu.ts";
 * const out = new Float64Array(1);
 * matmulCpu(new Float64Array([1, 2]), new Float64Array([3, 4]), { m: 1, n: 1, k: 2, transB: true }, out);
 * console.log(out[0]); // 11
 * ```
 */
export function matmulCpu(
  a: FloatArray,
  b: FloatArray,
  s: MatmulShape,
  out: FloatArray,
  accumulate = false,
): void {
  const { m, n, k } = s;
  const lda = s.transA ? m : k;
  const ldb = s.transB ? k : n;
  if (a.length < m * k || b.length < k * n || out.length < m * n) {
    throw new TensorMismatchError(
      `matmulCpu: ${m}×${k} · ${k}×${n} needs ${m * k}, ${k * n} and ${
        m * n
      } elements, got ${a.length}, ${b.length} and ${out.length}`,
    );
  }
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let p = 0; p < k; p++) {
        const av = s.transA ? a[p * lda + i] : a[i * lda + p];
        const bv = s.transB ? b[j * ldb + p] : b[p * ldb + j];
        sum += av * bv;
      }
      out[i * n + j] = accumulate ? out[i * n + j] + sum : sum;
    }
  }
}

const GELU_SCALE = Math.sqrt(2 / Math.PI);
const GELU_CUBIC = 0.044715;
const geluArg = (x: number) => GELU_SCALE * (x + GELU_CUBIC * x * x * x);
const geluTanh = (x: number) =>
  Math.tanh(Math.min(10, Math.max(-10, geluArg(x))));

/**
 * The activation at x (ReLU, or GELU's tanh form as in `kernels/nn/activation.wgsl`).
 *
 * @example
 * ```ts
 * import { activate } from "./cpu.ts";
 * console.log(activate(-1, "relu"), activate(0, "gelu")); // 0 0
 * ```
 */
export function activate(x: number, kind: ActivationKind): number {
  if (kind === "gelu") return 0.5 * x * (1 + geluTanh(x));
  return Math.max(x, 0);
}

/**
 * The derivative of the activation at x (ReLU: 0 at 0).
 *
 * @example
 * ```ts
 * import { activateGrad } from "./cpu.ts";
 * console.log(activateGrad(2, "relu"), activateGrad(0, "gelu")); // 1 0.5
 * ```
 */
export function activateGrad(x: number, kind: ActivationKind): number {
  if (kind === "gelu") {
    const t = geluTanh(x);
    // The clamped argument is constant past ±10.
    const du = Math.abs(geluArg(x)) >= 10
      ? 0
      : GELU_SCALE * (1 + 3 * GELU_CUBIC * x * x);
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du;
  }
  return x > 0 ? 1 : 0;
}

/** Softmax cross-entropy of each row, and the gradient of their mean. */
export interface CrossEntropyCpu {
  /** Mean loss over the valid rows. */
  loss: number;
  /** Loss of each row (0 past `valid`). */
  rowLoss: Float64Array;
  /** Rows whose first maximum is the label. */
  correct: number;
  /** d(mean loss)/d logits, `rows × cols` (0 past `valid`). */
  dlogits: Float64Array;
}

/**
 * Softmax cross-entropy of `rows × cols` logits against `labels` over the
 * first `valid` rows.
 *
 * @example
 * ```ts
 * import { softmaxCrossEntropyCpu } from "./cpu.ts";
 * const r = softmaxCrossEntropyCpu(new Float64Array([0, 0]), [1], 1, 2);
 * console.log(r.loss === Math.LN2, [...r.dlogits]); // true [ 0.5, -0.5 ]
 * ```
 */
export function softmaxCrossEntropyCpu(
  logits: FloatArray,
  labels: ArrayLike<number>,
  rows: number,
  cols: number,
  valid = rows,
): CrossEntropyCpu {
  const rowLoss = new Float64Array(rows);
  const dlogits = new Float64Array(rows * cols);
  let correct = 0;
  let total = 0;
  for (let r = 0; r < valid; r++) {
    const z = logits.subarray(r * cols, (r + 1) * cols);
    let max = -Infinity;
    let arg = 0;
    for (let c = 0; c < cols; c++) if (z[c] > max) [max, arg] = [z[c], c];
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += Math.exp(z[c] - max);
    const label = labels[r];
    if (!Number.isInteger(label) || label < 0 || label >= cols) {
      throw new InvalidOptionError(
        `softmaxCrossEntropyCpu: label ${label} of row ${r} is outside 0..${
          cols - 1
        }`,
      );
    }
    rowLoss[r] = Math.log(sum) + max - z[label];
    total += rowLoss[r];
    if (arg === label) correct++;
    for (let c = 0; c < cols; c++) {
      const p = Math.exp(z[c] - max) / sum;
      dlogits[r * cols + c] = (p - (c === label ? 1 : 0)) / valid;
    }
  }
  return { loss: total / valid, rowLoss, correct, dlogits };
}

/** Loss and gradients of one batch. */
export interface MlpCpuResult {
  /** Mean loss over the batch. */
  loss: number;
  /** Correct predictions. */
  correct: number;
  /** Gradients in {@link MlpCpu.params} order. */
  grads: FloatArray[];
}

/**
 * The MLP of `mlp()` in `./layers.ts` on the CPU: parameters in the same
 * order and layout (`fc1.weight`, `fc1.bias`, `fc2.weight`, …), forward and
 * backward in f64 or f32.
 *
 * @example
 * ```ts
 * import { MlpCpu } from "./cpu.ts";
 * const net = new MlpCpu([2, 3, 2], "relu", Float64Array);
 * net.params[0].set([1, 0, 0, 1, 1, 1]);
 * const { loss, grads } = net.lossAndGrads(new Float64Array([1, 2]), [1], 1);
 * console.log(loss > 0, grads.length); // true 4
 * ```
 */
export class MlpCpu {
  /** Layer widths. */
  readonly sizes: readonly number[];
  /** Activation between layers. */
  readonly activation: ActivationKind;
  /** Array type of the computation. */
  readonly type: FloatArrayType;
  /** Parameters: weight `[out, in]` then bias `[out]`, per layer. */
  readonly params: FloatArray[];
  /** Their names, as `mlp()` names them. */
  readonly names: string[];

  /**
   * A zero-initialized MLP (set `params` before use).
   *
   * @param sizes Widths: inputs, hidden…, outputs.
   * @param activation Activation between layers.
   * @param type `Float64Array` or `Float32Array`.
   */
  constructor(
    sizes: readonly number[],
    activation: ActivationKind,
    type: FloatArrayType,
  ) {
    this.sizes = [...sizes];
    this.activation = activation;
    this.type = type;
    this.params = [];
    this.names = [];
    for (let l = 0; l + 1 < sizes.length; l++) {
      this.params.push(
        new type(sizes[l + 1] * sizes[l]),
        new type(sizes[l + 1]),
      );
      this.names.push(`fc${l + 1}.weight`, `fc${l + 1}.bias`);
    }
  }

  /** Logits of `rows` inputs (and the layers' pre-activations and outputs). */
  forward(
    x: FloatArray,
    rows: number,
  ): { logits: FloatArray; pre: FloatArray[]; post: FloatArray[] } {
    const L = this.sizes.length - 1;
    const pre: FloatArray[] = [];
    const post: FloatArray[] = [x];
    let h = x;
    for (let l = 0; l < L; l++) {
      const inF = this.sizes[l];
      const outF = this.sizes[l + 1];
      const z = new this.type(rows * outF);
      matmulCpu(h, this.params[2 * l], {
        m: rows,
        n: outF,
        k: inF,
        transB: true,
      }, z);
      const bias = this.params[2 * l + 1];
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < outF; c++) z[r * outF + c] += bias[c];
      }
      pre.push(z);
      if (l < L - 1) {
        h = z.map((v) => activate(v, this.activation));
        post.push(h);
      } else {
        h = z;
      }
    }
    return { logits: h, pre, post };
  }

  /** Mean softmax cross-entropy of a batch and its gradients. */
  lossAndGrads(
    x: FloatArray,
    labels: ArrayLike<number>,
    rows: number,
    valid = rows,
  ): MlpCpuResult {
    const L = this.sizes.length - 1;
    const { logits, pre, post } = this.forward(x, rows);
    const classes = this.sizes[L];
    const ce = softmaxCrossEntropyCpu(logits, labels, rows, classes, valid);
    const grads: FloatArray[] = new Array(2 * L);
    let dz: FloatArray = this.type.from(ce.dlogits);
    for (let l = L - 1; l >= 0; l--) {
      const inF = this.sizes[l];
      const outF = this.sizes[l + 1];
      const dw = new this.type(outF * inF);
      matmulCpu(dz, post[l], { m: outF, n: inF, k: rows, transA: true }, dw);
      const db = new this.type(outF);
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < outF; c++) db[c] += dz[r * outF + c];
      }
      grads[2 * l] = dw;
      grads[2 * l + 1] = db;
      if (l > 0) {
        const dh = new this.type(rows * inF);
        matmulCpu(dz, this.params[2 * l], { m: rows, n: inF, k: outF }, dh);
        const z = pre[l - 1];
        dz = dh.map((g, i) => g * activateGrad(z[i], this.activation));
      }
    }
    return { loss: ce.loss, correct: ce.correct, grads };
  }
}
