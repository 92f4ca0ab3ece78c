/**
 * src/nn/cpu.ts, the CPU reference of the model building blocks: its
 * gradients against central finite differences in f64 (every parameter of
 * small MLPs, ReLU and GELU, full and partial batches), its matrix product
 * against explicit transposes, and its loss against closed forms.
 */

import assert from "node:assert/strict";
import {
  activate,
  activateGrad,
  matmulCpu,
  MlpCpu,
  softmaxCrossEntropyCpu,
} from "../src/nn/cpu.ts";
import { rng } from "./rng.ts";

function fill(a: Float64Array, r: () => number, scale: number): Float64Array {
  for (let i = 0; i < a.length; i++) a[i] = (2 * r() - 1) * scale;
  return a;
}

/** Max over elements of |a − b| / max(|b|, floor). */
function relError(a: ArrayLike<number>, b: ArrayLike<number>, floor: number) {
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    worst = Math.max(
      worst,
      Math.abs(a[i] - b[i]) / Math.max(Math.abs(b[i]), floor),
    );
  }
  return worst;
}

for (const activation of ["relu", "gelu"] as const) {
  for (const valid of [5, 3]) {
    Deno.test(`MlpCpu ${activation}: gradients equal central differences in f64 (valid ${valid} of 5 rows)`, () => {
      const r = rng(activation === "relu" ? 11 : 12);
      const sizes = [6, 5, 4, 3];
      const rows = 5;
      const net = new MlpCpu(sizes, activation, Float64Array);
      for (const p of net.params) fill(p as Float64Array, r, 0.8);
      const x = fill(new Float64Array(rows * sizes[0]), r, 1);
      const labels = [0, 2, 1, 2, 0];
      const { grads, loss } = net.lossAndGrads(x, labels, rows, valid);
      assert.ok(loss > 0);
      const h = 1e-6;
      net.params.forEach((p, pi) => {
        const numeric = new Float64Array(p.length);
        for (let i = 0; i < p.length; i++) {
          const keep = p[i];
          p[i] = keep + h;
          const up = net.lossAndGrads(x, labels, rows, valid).loss;
          p[i] = keep - h;
          const down = net.lossAndGrads(x, labels, rows, valid).loss;
          p[i] = keep;
          numeric[i] = (up - down) / (2 * h);
        }
        const err = relError(grads[pi], numeric, 1e-4);
        assert.ok(err < 1e-6, `${net.names[pi]}: relative error ${err}`);
      });
    });
  }
}

Deno.test("activations: derivatives equal central differences; ReLU is 0 at 0, GELU tends to 0 and x at the ends", () => {
  for (const kind of ["relu", "gelu"] as const) {
    for (const x of [-3.7, -0.4, 0.3, 1.9, 6, -7]) {
      const h = 1e-6;
      const numeric = (activate(x + h, kind) - activate(x - h, kind)) / (2 * h);
      assert.ok(
        Math.abs(activateGrad(x, kind) - numeric) < 1e-8,
        `${kind} at ${x}`,
      );
    }
  }
  assert.equal(activateGrad(0, "relu"), 0);
  assert.ok(Math.abs(activate(-40, "gelu")) < 1e-7);
  assert.ok(Math.abs(activate(40, "gelu") - 40) < 1e-6);
  // The tanh form near its known value: GELU(1) ≈ 0.841192 (tanh approximation).
  assert.ok(Math.abs(activate(1, "gelu") - 0.8411919906082768) < 1e-12);
});

Deno.test("matmulCpu: every transpose combination equals the product of explicitly transposed matrices; accumulate adds", () => {
  const r = rng(3);
  const [m, n, k] = [3, 4, 5];
  const A = fill(new Float64Array(m * k), r, 1); // m × k
  const B = fill(new Float64Array(k * n), r, 1); // k × n
  const t = (X: Float64Array, rows: number, cols: number) => {
    const out = new Float64Array(rows * cols);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) out[j * rows + i] = X[i * cols + j];
    }
    return out;
  };
  const want = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      for (let p = 0; p < k; p++) {
        want[i * n + j] += A[i * k + p] * B[p * n + j];
      }
    }
  }
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      const out = new Float64Array(m * n);
      matmulCpu(transA ? t(A, m, k) : A, transB ? t(B, k, n) : B, {
        m,
        n,
        k,
        transA,
        transB,
      }, out);
      assert.ok(
        relError(out, want, 1e-12) < 1e-14,
        `transA ${transA} transB ${transB}`,
      );
    }
  }
  const acc = new Float64Array(m * n).fill(1);
  matmulCpu(A, B, { m, n, k }, acc, true);
  assert.ok(relError(acc, want.map((x) => x + 1), 1e-12) < 1e-14);
  assert.throws(
    () => matmulCpu(A, B, { m, n: 9, k }, new Float64Array(1)),
    /needs/,
  );
});

Deno.test("softmaxCrossEntropyCpu: closed forms, first-maximum accuracy, mean over the valid rows only", () => {
  // Uniform logits over 4 classes: loss ln 4, gradient (1/4 − onehot)/valid.
  const r = softmaxCrossEntropyCpu(
    new Float64Array([0, 0, 0, 0, 5, 1, 1, 1, 9, 9, 9, 9]),
    [2, 0, 3],
    3,
    4,
    2,
  );
  assert.ok(Math.abs(r.rowLoss[0] - Math.log(4)) < 1e-15);
  assert.ok(
    Math.abs(r.rowLoss[1] - (Math.log(Math.exp(5) + 3 * Math.E) - 5)) < 1e-14,
  );
  assert.equal(r.rowLoss[2], 0); // past valid
  assert.ok(Math.abs(r.loss - (r.rowLoss[0] + r.rowLoss[1]) / 2) < 1e-15);
  assert.deepEqual([...r.dlogits.subarray(0, 4)], [
    0.125,
    0.125,
    -0.375,
    0.125,
  ]);
  assert.deepEqual([...r.dlogits.subarray(8)], [0, 0, 0, 0]);
  // Row 0 ties: the first maximum (class 0) is not label 2; row 1 is right.
  assert.equal(r.correct, 1);
  assert.throws(
    () => softmaxCrossEntropyCpu(new Float64Array(2), [2], 1, 2),
    /label 2 of row 0/,
  );
});
