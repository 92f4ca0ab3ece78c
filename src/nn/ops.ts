/**
 * Differentiable ops on {@link Value}s: each records its forward dispatches
 * into the value's graph and says how to compute its inputs' gradients.
 * They share the kernels of `kernels/nn/` (one matmul serves every product,
 * transposed as needed), so new layers compose from the same pieces.
 *
 * @module
 */

import { InvalidOptionError, TensorMismatchError } from "../errors.ts";
import { readRanges } from "../gpu/buffers.ts";
import type { Dispatch, GradTarget, Graph } from "./graph.ts";
import type { Value } from "./graph.ts";
import { LENGTH, MATMUL_DIMS, MATRIX_DIMS, nnPipeline } from "./kernels.ts";

/** Elementwise activation functions. */
export type ActivationKind = "relu" | "gelu";

const ACTIVATION_CODE: Record<ActivationKind, number> = { relu: 0, gelu: 1 };

/** Operands of one (batched) matrix product `c (=|+=) op(a) · op(b)`. */
export interface MatmulSpec {
  /** Buffer of A (`m × k`, or `k × m` when `transA`). */
  a: GPUBuffer;
  /** Buffer of B (`k × n`, or `n × k` when `transB`). */
  b: GPUBuffer;
  /** Buffer of C (`m × n`). */
  c: GPUBuffer;
  /** Rows of op(A) and C. */
  m: number;
  /** Columns of op(B) and C. */
  n: number;
  /** Columns of op(A), rows of op(B). */
  k: number;
  /** Use Aᵀ. @default {false} */
  transA?: boolean;
  /** Use Bᵀ. @default {false} */
  transB?: boolean;
  /** Add to C instead of overwriting it. @default {false} */
  accumulate?: boolean;
  /** Independent products, matrices `m·k`, `k·n`, `m·n` elements apart. @default {1} */
  batch?: number;
}

/** Rows and columns of C per workgroup (both matmul kernels). */
const TILE = 32;

/**
 * The dispatch of one matrix product on `graph`'s device (contiguous
 * row-major matrices). Exposed for ops that need a product in their
 * backward pass.
 */
export function matmulDispatch(graph: Graph, s: MatmulSpec): Dispatch {
  const transA = s.transA ?? false;
  const transB = s.transB ?? false;
  const batch = s.batch ?? 1;
  const values = {
    m: s.m,
    n: s.n,
    k: s.k,
    lda: transA ? s.m : s.k,
    ldb: transB ? s.k : s.n,
    ldc: s.n,
    stride_a: s.m * s.k,
    stride_b: s.k * s.n,
    stride_c: s.m * s.n,
  };
  // The vec4 kernel reads whole vec4s along k and along the leading dimensions.
  const vec4 = [
    values.k,
    values.lda,
    values.ldb,
    values.stride_a,
    values.stride_b,
  ]
    .every((v) => v % 4 === 0);
  const pipeline = nnPipeline(graph.device, vec4 ? "matmulVec4" : "matmul", {
    TRANS_A: transA ? 1 : 0,
    TRANS_B: transB ? 1 : 0,
    ACCUMULATE: s.accumulate ? 1 : 0,
  });
  const dims = graph.uniform(MATMUL_DIMS, values);
  const max = graph.device.limits.maxComputeWorkgroupsPerDimension;
  const workgroups = [
    Math.ceil(s.n / TILE),
    Math.ceil(s.m / TILE),
    batch,
  ] as const;
  if (workgroups.some((w) => w > max)) {
    throw new TensorMismatchError(
      `matmul ${s.m}×${s.k} · ${s.k}×${s.n} (batch ${batch}) needs ${
        workgroups.join(" × ")
      } workgroups, more than the device's ${max} per dimension`,
    );
  }
  return {
    label: `matmul${vec4 ? " vec4" : ""}${transA ? " Aᵀ" : ""}${
      transB ? " Bᵀ" : ""
    }`,
    pipeline,
    bindGroup: graph.bindGroup(pipeline, [dims, s.a, s.b, s.c]),
    workgroups,
  };
}

function matrixShape(v: Value, what: string): [number, number, number] {
  const s = v.shape;
  if (s.length === 2) return [1, s[0], s[1]];
  if (s.length === 3) return [s[0], s[1], s[2]];
  throw new TensorMismatchError(
    `${what}: expected a matrix or a batch of matrices, got shape [${
      s.join(", ")
    }]`,
  );
}

function sameGraph(values: Value[], what: string): Graph {
  const g = values[0].graph;
  if (values.some((v) => v.graph !== g)) {
    throw new TensorMismatchError(
      `${what}: its inputs belong to different graphs`,
    );
  }
  return g;
}

/**
 * The matrix product `op(a) · op(b)` of two matrices, or of two batches of
 * matrices (shape `[batch, rows, cols]`), where op transposes when asked.
 *
 * @example
 * ```ts
 * import { requestDevice } from "../gpu/device.ts";
 * import { Graph } from "./graph.ts";
 * import { matmul } from "./ops.ts";
 * const device = await requestDevice();
 * const g = new Graph(device, { backward: false });
 * const a = g.value([2, 3]);
 * const b = g.value([4, 3]);
 * console.log(matmul(a, b, { transB: true }).shape); // [ 2, 4 ]
 * device.destroy();
 * ```
 */
export function matmul(
  a: Value,
  b: Value,
  options: { transA?: boolean; transB?: boolean } = {},
): Value {
  const graph = sameGraph([a, b], "matmul");
  const transA = options.transA ?? false;
  const transB = options.transB ?? false;
  const [ba, ra, ca] = matrixShape(a, "matmul A");
  const [bb, rb, cb] = matrixShape(b, "matmul B");
  const [m, k] = transA ? [ca, ra] : [ra, ca];
  const [kb, n] = transB ? [cb, rb] : [rb, cb];
  if (k !== kb || ba !== bb) {
    throw new TensorMismatchError(
      `matmul: op(A) is ${ba > 1 ? `${ba} × ` : ""}${m}×${k} and op(B) ${
        bb > 1 ? `${bb} × ` : ""
      }${kb}×${n}; inner dimensions and batch counts must agree`,
    );
  }
  const batched = a.shape.length === 3;
  const out = graph.value(batched ? [ba, m, n] : [m, n], {
    requiresGrad: a.requiresGrad || b.requiresGrad,
    label: "matmul",
  });
  graph.add({
    label: "matmul",
    forward: [
      matmulDispatch(graph, {
        a: a.data,
        b: b.data,
        c: out.data,
        m,
        n,
        k,
        transA,
        transB,
        batch: ba,
      }),
    ],
    backward: (ctx) => {
      const dc = ctx.outputGrad(out);
      if (!dc) return [];
      const list: Dispatch[] = [];
      const da = ctx.inputGrad(a);
      if (da) {
        list.push(
          productGradA(graph, dc, b.data, m, n, k, transA, transB, da, ba),
        );
      }
      const db = ctx.inputGrad(b);
      if (db) {
        list.push(
          productGradB(graph, dc, a.data, m, n, k, transA, transB, db, ba),
        );
      }
      return list;
    },
  });
  return out;
}

// For C = op(A)·op(B): d op(A) = dC·op(B)ᵀ, so dA = dC·op(B)ᵀ (m×k) or, when
// A is stored transposed, dA = op(B)·dCᵀ (k×m).
function productGradA(
  graph: Graph,
  dc: GPUBuffer,
  b: GPUBuffer,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
  target: GradTarget,
  batch: number,
): Dispatch {
  if (!transA) {
    // dA (m×k) = dC (m×n) · op(B)ᵀ; op(B)ᵀ is B when transB, else Bᵀ.
    return matmulDispatch(graph, {
      a: dc,
      b,
      c: target.buffer,
      m,
      n: k,
      k: n,
      transB: !transB,
      accumulate: target.accumulate,
      batch,
    });
  }
  // dA (k×m) = op(B) (k×n) · dCᵀ.
  return matmulDispatch(graph, {
    a: b,
    b: dc,
    c: target.buffer,
    m: k,
    n: m,
    k: n,
    transA: transB,
    transB: true,
    accumulate: target.accumulate,
    batch,
  });
}

// d op(B) = op(A)ᵀ·dC, so dB = op(A)ᵀ·dC (k×n) or, when B is stored
// transposed, dB = dCᵀ·op(A) (n×k).
function productGradB(
  graph: Graph,
  dc: GPUBuffer,
  a: GPUBuffer,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
  target: GradTarget,
  batch: number,
): Dispatch {
  if (!transB) {
    // dB (k×n) = op(A)ᵀ (k×m) · dC (m×n); op(A)ᵀ is A when transA, else Aᵀ.
    return matmulDispatch(graph, {
      a,
      b: dc,
      c: target.buffer,
      m: k,
      n,
      k: m,
      transA: !transA,
      accumulate: target.accumulate,
      batch,
    });
  }
  // dB (n×k) = dCᵀ (n×m) · op(A) (m×k).
  return matmulDispatch(graph, {
    a: dc,
    b: a,
    c: target.buffer,
    m: n,
    n: k,
    k: m,
    transA: true,
    transB: transA,
    accumulate: target.accumulate,
    batch,
  });
}

/**
 * A linear layer `x · weightᵀ + bias` on a batch of rows: `x` is
 * `rows × in`, `weight` is `out × in` (PyTorch's layout), `bias` has `out`
 * elements. The bias is added in place to the product; its gradient is the
 * column sum of the output's.
 *
 * @example
 * ```ts
 * import { requestDevice } from "../gpu/device.ts";
 * import { Graph } from "./graph.ts";
 * import { linear } from "./ops.ts";
 * const device = await requestDevice();
 * const g = new Graph(device, { backward: false });
 * console.log(linear(g.value([8, 3]), g.value([5, 3]), g.value([5])).shape); // [ 8, 5 ]
 * device.destroy();
 * ```
 */
export function linear(x: Value, weight: Value, bias?: Value): Value {
  const graph = sameGraph(bias ? [x, weight, bias] : [x, weight], "linear");
  if (x.shape.length !== 2 || weight.shape.length !== 2) {
    throw new TensorMismatchError(
      `linear: expected x of shape [rows, in] and weight [out, in], got [${
        x.shape.join(", ")
      }] and [${weight.shape.join(", ")}]`,
    );
  }
  const [rows, inF] = x.shape;
  const [outF, inW] = weight.shape;
  if (inF !== inW || (bias && (bias.size !== outF))) {
    throw new TensorMismatchError(
      `linear: x [${rows}, ${inF}], weight [${outF}, ${inW}]${
        bias ? `, bias [${bias.shape.join(", ")}]` : ""
      }: weight must be [out, ${inF}] and bias [out]`,
    );
  }
  const out = graph.value([rows, outF], {
    requiresGrad: x.requiresGrad || weight.requiresGrad ||
      (bias?.requiresGrad ?? false),
    label: "linear",
  });
  const forward = [
    matmulDispatch(graph, {
      a: x.data,
      b: weight.data,
      c: out.data,
      m: rows,
      n: outF,
      k: inF,
      transB: true,
    }),
  ];
  if (bias) {
    const add = nnPipeline(graph.device, "biasAdd");
    forward.push({
      label: "bias add",
      pipeline: add,
      bindGroup: graph.bindGroup(add, [
        graph.uniform(MATRIX_DIMS, { rows, cols: outF }),
        bias.data,
        out.data,
      ]),
      workgroups: graph.grid(rows * outF),
    });
  }
  graph.add({
    label: "linear",
    forward,
    backward: (ctx) => {
      const dy = ctx.outputGrad(out);
      if (!dy) return [];
      const list: Dispatch[] = [];
      const dw = ctx.inputGrad(weight);
      if (dw) {
        // dW (out×in) = dYᵀ (out×rows) · X (rows×in).
        list.push(matmulDispatch(graph, {
          a: dy,
          b: x.data,
          c: dw.buffer,
          m: outF,
          n: inF,
          k: rows,
          transA: true,
          accumulate: dw.accumulate,
        }));
      }
      const db = bias ? ctx.inputGrad(bias) : undefined;
      if (db) list.push(columnSum(graph, dy, rows, outF, db));
      const dx = ctx.inputGrad(x);
      if (dx) {
        // dX (rows×in) = dY (rows×out) · W (out×in).
        list.push(matmulDispatch(graph, {
          a: dy,
          b: weight.data,
          c: dx.buffer,
          m: rows,
          n: inF,
          k: outF,
          accumulate: dx.accumulate,
        }));
      }
      return list;
    },
  });
  return out;
}

/** The dispatch of `target (=|+=) Σ_rows x` over a rows × cols matrix. */
export function columnSum(
  graph: Graph,
  x: GPUBuffer,
  rows: number,
  cols: number,
  target: GradTarget,
): Dispatch {
  const pipeline = nnPipeline(graph.device, "columnSum", {
    ACCUMULATE: target.accumulate ? 1 : 0,
  });
  return {
    label: "column sum",
    pipeline,
    bindGroup: graph.bindGroup(pipeline, [
      graph.uniform(MATRIX_DIMS, { rows, cols }),
      x,
      target.buffer,
    ]),
    workgroups: [Math.ceil(cols / 64), 1, 1],
  };
}

/**
 * An elementwise activation, ReLU or GELU (tanh form), with its gradient.
 *
 * @example
 * ```ts
 * import { requestDevice } from "../gpu/device.ts";
 * import { Graph } from "./graph.ts";
 * import { activation } from "./ops.ts";
 * const device = await requestDevice();
 * const g = new Graph(device, { backward: false });
 * console.log(activation(g.value([4, 2]), "gelu").shape); // [ 4, 2 ]
 * device.destroy();
 * ```
 */
export function activation(x: Value, kind: ActivationKind): Value {
  const code = ACTIVATION_CODE[kind];
  if (code === undefined) {
    throw new InvalidOptionError(
      `activation: expected "relu" or "gelu", got ${JSON.stringify(kind)}`,
    );
  }
  const graph = x.graph;
  const out = graph.value(x.shape, {
    requiresGrad: x.requiresGrad,
    label: kind,
  });
  const length = graph.uniform(LENGTH, { length: x.size });
  const fwd = nnPipeline(graph.device, "activationForward", {
    ACTIVATION: code,
  });
  graph.add({
    label: kind,
    forward: [{
      label: kind,
      pipeline: fwd,
      bindGroup: graph.bindGroup(fwd, [length, x.data, out.data]),
      workgroups: graph.grid(x.size),
    }],
    backward: (ctx) => {
      const dy = ctx.outputGrad(out);
      const dx = dy && ctx.inputGrad(x);
      if (!dy || !dx) return [];
      const bwd = nnPipeline(graph.device, "activationBackward", {
        ACTIVATION: code,
        ACCUMULATE: dx.accumulate ? 1 : 0,
      });
      return [{
        label: `${kind} backward`,
        pipeline: bwd,
        bindGroup: graph.bindGroup(bwd, [length, x.data, dy, dx.buffer]),
        workgroups: graph.grid(x.size),
      }];
    },
  });
  return out;
}

/** Per-batch totals of a classification loss, on the GPU. */
export interface LossTotals {
  /**
   * A table of `slots` entries of three u32 words: the f32 bits of a batch's
   * summed row losses, its correct predictions, its row count. Each pass
   * writes the entry of the `slot` in its batch uniform; read them with
   * {@link readLossTotals}.
   */
  totals: GPUBuffer;
  /** Entries in the table. */
  slots: number;
}

/**
 * Softmax cross-entropy of `logits` (`rows × classes`) against `labels`
 * (u32 per row) over the first `valid` rows of the batch (from the `batch`
 * uniform, see `BATCH` in `./kernels.ts`), averaged over them. The loss must
 * be the graph's last op: in a training graph its kernel writes the logits'
 * gradient at once. Each pass writes the batch's summed loss, correct
 * predictions (first maximum equal to the label) and row count to entry
 * `slot` of the returned table.
 *
 * @example
 * ```ts
 * import { requestDevice } from "../gpu/device.ts";
 * import { Graph } from "./graph.ts";
 * import { BATCH } from "./kernels.ts";
 * import { softmaxCrossEntropy } from "./ops.ts";
 * const device = await requestDevice();
 * const g = new Graph(device, { backward: false });
 * const labels = g.buffer(8, "labels");
 * const batch = g.uniform(BATCH, { start: 0, valid: 2, slot: 0 });
 * const { totals } = softmaxCrossEntropy(g.value([2, 10]), labels, batch, 4);
 * console.log(totals.size); // 48
 * device.destroy();
 * ```
 */
export function softmaxCrossEntropy(
  logits: Value,
  labels: GPUBuffer,
  batch: GPUBuffer,
  slots = 1,
): LossTotals {
  const graph = logits.graph;
  if (logits.shape.length !== 2) {
    throw new TensorMismatchError(
      `softmaxCrossEntropy: expected logits of shape [rows, classes], got [${
        logits.shape.join(", ")
      }]`,
    );
  }
  const [rows, cols] = logits.shape;
  const withGrad = graph.backward && logits.requiresGrad;
  const rowLoss = graph.buffer(4 * rows, "row loss");
  const rowCorrect = graph.buffer(4 * rows, "row correct");
  if (!Number.isInteger(slots) || slots < 1) {
    throw new InvalidOptionError(
      `softmaxCrossEntropy slots: expected an integer >= 1, got ${slots}`,
    );
  }
  const totals = graph.buffer(12 * slots, "loss totals");
  const xent = nnPipeline(graph.device, "softmaxCrossEntropy", {
    WITH_GRAD: withGrad ? 1 : 0,
  });
  const sum = nnPipeline(graph.device, "lossSum");
  // Without a gradient the kernel still needs a binding there: a small scratch.
  const dlogits = withGrad ? logits.grad : graph.buffer(4, "no grad");
  graph.add({
    label: "softmax cross-entropy",
    forward: [
      {
        label: "softmax cross-entropy",
        pipeline: xent,
        bindGroup: graph.bindGroup(xent, [
          graph.uniform(MATRIX_DIMS, { rows, cols }),
          batch,
          logits.data,
          labels,
          rowLoss,
          rowCorrect,
          dlogits,
        ]),
        workgroups: graph.grid(rows, 1),
      },
      {
        label: "loss sum",
        pipeline: sum,
        bindGroup: graph.bindGroup(sum, [batch, rowLoss, rowCorrect, totals]),
        workgroups: [1, 1, 1],
      },
    ],
    backward: (ctx) => {
      if (!withGrad) return [];
      const target = ctx.inputGrad(logits);
      if (target?.accumulate) {
        throw new TensorMismatchError(
          "softmaxCrossEntropy must be the graph's last op: its logits feed another op that was recorded after it",
        );
      }
      return []; // the forward kernel wrote the gradient
    },
  });
  return { totals, slots };
}

/** Summed loss, correct predictions and rows of a batch (or of several). */
export interface Totals {
  /** Sum of the row losses. */
  loss: number;
  /** Correct predictions. */
  correct: number;
  /** Rows. */
  count: number;
}

/**
 * Reads entries `[0, n)` of a loss-totals table (one submit and map), one
 * {@link Totals} per batch: the caller sums them in the order it chooses, so
 * that sums do not depend on when they were read.
 */
export async function readLossTotals(
  device: GPUDevice,
  table: LossTotals,
  n: number,
): Promise<Totals[]> {
  if (!Number.isInteger(n) || n < 0 || n > table.slots) {
    throw new InvalidOptionError(
      `readLossTotals: expected 0..${table.slots} entries, got ${n}`,
    );
  }
  if (n === 0) return [];
  const [bytes] = await readRanges(device, [{
    buffer: table.totals,
    offset: 0,
    size: 12 * n,
  }]);
  const u32 = new Uint32Array(bytes.buffer, bytes.byteOffset, 3 * n);
  const f32 = new Float32Array(bytes.buffer, bytes.byteOffset, 3 * n);
  return Array.from({ length: n }, (_, i) => ({
    loss: f32[3 * i],
    correct: u32[3 * i + 1],
    count: u32[3 * i + 2],
  }));
}
