/**
 * The model building blocks on WebGPU (kernels/nn, src/nn) against the CPU
 * reference (src/nn/cpu.ts, f64): both matmul kernels in every transpose
 * combination, batched and accumulating; activations and their gradients;
 * the column sum; softmax cross-entropy with partial batches and the loss
 * table; bf16 casts; the batch gather; gradients of whole MLPs (ReLU and
 * GELU, f32 and bf16 parameters) and of a weight used twice (accumulation).
 */

import assert from "node:assert/strict";
import { readBuffer } from "../src/gpu/buffers.ts";
import { fromBf16Array, toBf16Array } from "../src/numeric/bf16.ts";
import { readTensor, writeTensor } from "../src/gpu/tensor_io.ts";
import { Graph, type Value } from "../src/nn/graph.ts";
import {
  BATCH,
  LENGTH,
  nnKernelSource,
  nnPipeline,
} from "../src/nn/kernels.ts";
import { mlp } from "../src/nn/layers.ts";
import {
  activation,
  linear,
  matmul,
  readLossTotals,
  softmaxCrossEntropy,
} from "../src/nn/ops.ts";
import { Parameter } from "../src/nn/parameter.ts";
import {
  activate,
  activateGrad,
  matmulCpu,
  MlpCpu,
  softmaxCrossEntropyCpu,
} from "../src/nn/cpu.ts";
import { GpuDataset } from "../src/data/gpu_dataset.ts";
import { syntheticImageData } from "../src/data/synthetic.ts";
import { pixelStats } from "../src/data/images.ts";
import { dispatchWith, rng, testDevice } from "./gpu_util.ts";

const device = await testDevice();

function random(
  n: number,
  r: () => number,
  scale = 1,
): Float32Array<ArrayBuffer> {
  return Float32Array.from({ length: n }, () => (2 * r() - 1) * scale);
}

async function read(buffer: GPUBuffer, n: number): Promise<Float32Array> {
  return new Float32Array(await readBuffer(device, buffer), 0, n);
}

function upload(v: Value, data: Float32Array<ArrayBuffer>): void {
  device.queue.writeBuffer(v.data, 0, data);
}

/** Runs a finished graph once, in a pass of its own. */
function run(g: Graph): void {
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  g.encode(pass);
  pass.end();
  device.queue.submit([enc.finish()]);
}

/** Max |gpu − cpu| / (max |cpu| over the array), a scale-aware error. */
function scaledError(gpu: ArrayLike<number>, cpu: ArrayLike<number>): number {
  let scale = 1e-30;
  for (let i = 0; i < cpu.length; i++) {
    scale = Math.max(scale, Math.abs(cpu[i]));
  }
  let worst = 0;
  for (let i = 0; i < cpu.length; i++) {
    worst = Math.max(worst, Math.abs(gpu[i] - cpu[i]) / scale);
  }
  return worst;
}

Deno.test("nn kernels compile without validation errors", async () => {
  const kernels = [
    "matmul",
    "matmulVec4",
    "biasAdd",
    "activationForward",
    "activationBackward",
    "columnSum",
    "softmaxCrossEntropy",
    "lossSum",
    "gatherRows",
    "bf16Narrow",
    "bf16Widen",
  ] as const;
  for (const k of kernels) {
    assert.ok(nnKernelSource(k).includes("fn main"), k);
    device.pushErrorScope("validation");
    nnPipeline(device, k);
    const err = await device.popErrorScope();
    assert.equal(err, null, `${k}: ${err?.message}`);
  }
});

for (const vec4 of [true, false]) {
  Deno.test(`matmul (${vec4 ? "vec4" : "scalar"} kernel): every transpose combination, batched, and accumulating, equals the CPU product`, async () => {
    const r = rng(vec4 ? 21 : 22);
    // k and the leading dimensions divisible by 4 select the vec4 kernel;
    // odd ones the scalar kernel. Sizes cross the 32-wide tiles.
    const [m, n, k] = vec4 ? [37, 44, 68] : [37, 43, 67];
    const batch = 2;
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        if (vec4 && (transA ? m : k) % 4 !== 0 && transA) {
          // lda = m must be a multiple of 4 for the vec4 kernel with Aᵀ:
          // take m = 36 there.
        }
        const mm = vec4 && transA ? 36 : m;
        const nn = vec4 && transB ? n : (vec4 ? 44 : n);
        const g = new Graph(device, { backward: false });
        const a = g.value(transA ? [batch, k, mm] : [batch, mm, k]);
        const b = g.value(transB ? [batch, nn, k] : [batch, k, nn]);
        const A = random(batch * mm * k, r);
        const B = random(batch * k * nn, r);
        upload(a, A);
        upload(b, B);
        const c = matmul(a, b, { transA, transB });
        g.finish();
        const label = g.forwardDispatches[0].label;
        assert.equal(label.includes("vec4"), vec4, label);
        run(g);
        const got = await read(c.data, batch * mm * nn);
        for (let z = 0; z < batch; z++) {
          const want = new Float64Array(mm * nn);
          matmulCpu(
            Float64Array.from(A.subarray(z * mm * k, (z + 1) * mm * k)),
            Float64Array.from(B.subarray(z * k * nn, (z + 1) * k * nn)),
            { m: mm, n: nn, k, transA, transB },
            want,
          );
          const err = scaledError(
            got.subarray(z * mm * nn, (z + 1) * mm * nn),
            want,
          );
          assert.ok(
            err < 1e-5,
            `transA ${transA} transB ${transB} batch ${z}: ${err}`,
          );
        }
        g.dispose();
      }
    }
  });
}

Deno.test("activations on the GPU: forward and backward (overwriting and accumulating) equal the CPU reference", async () => {
  const r = rng(5);
  for (const kind of ["relu", "gelu"] as const) {
    const n = 1000;
    const X = random(n, r, 6);
    const DY = random(n, r);
    const g = new Graph(device, { backward: false });
    const x = g.value([n]);
    upload(x, X);
    const y = activation(x, kind);
    g.finish();
    run(g);
    const gotY = await read(y.data, n);
    assert.ok(scaledError(gotY, X.map((v) => activate(v, kind))) < 1e-6, kind);

    // The backward kernel directly, without and with ACCUMULATE.
    for (const accumulate of [false, true]) {
      const pipe = nnPipeline(device, "activationBackward", {
        ACTIVATION: kind === "gelu" ? 1 : 0,
        ACCUMULATE: accumulate ? 1 : 0,
      });
      const dy = g.buffer(4 * n, "dy");
      const dx = g.buffer(4 * n, "dx");
      device.queue.writeBuffer(dy, 0, DY);
      device.queue.writeBuffer(dx, 0, new Float32Array(n).fill(0.25));
      const [wx, wy] = g.grid(n);
      dispatchWith(
        device,
        pipe,
        [g.uniform(LENGTH, { length: n }), x.data, dy, dx],
        wx,
        wy,
      );
      const want = Float64Array.from(
        X,
        (v, i) => DY[i] * activateGrad(v, kind) + (accumulate ? 0.25 : 0),
      );
      const err = scaledError(await read(dx, n), want);
      // f32 tanh (GELU) is accurate to a few ulps, not to the last bit.
      assert.ok(err < 1e-5, `${kind} accumulate ${accumulate}: ${err}`);
    }
    g.dispose();
  }
});

Deno.test("softmax cross-entropy on the GPU: row losses, first-maximum accuracy, gradient of the mean over valid rows, loss table slots", async () => {
  const r = rng(8);
  const [rows, cols, valid] = [7, 10, 5];
  const Z = random(rows * cols, r, 4);
  Z.set([3, 1, 3, 0, 0, 0, 0, 0, 0, 0], 0); // a tie in row 0: the first maximum wins
  const labels = Uint32Array.from({ length: rows }, (_, i) => (3 * i) % cols);
  labels[0] = 2;
  const g = new Graph(device);
  const z = g.value([rows, cols], { requiresGrad: true });
  upload(z, Z);
  const lab = g.buffer(4 * rows, "labels");
  device.queue.writeBuffer(lab, 0, labels);
  const batch = g.uniform(BATCH, { start: 0, valid, slot: 2 });
  const table = softmaxCrossEntropy(z, lab, batch, 3);
  g.finish();
  run(g);
  const cpu = softmaxCrossEntropyCpu(
    Float64Array.from(Z),
    labels,
    rows,
    cols,
    valid,
  );
  const [s0, s1, s2] = await readLossTotals(device, table, 3);
  assert.deepEqual([s0.count, s1.count], [0, 0]); // untouched slots
  assert.equal(s2.count, valid);
  assert.equal(s2.correct, cpu.correct);
  assert.ok(
    Math.abs(s2.loss / valid - cpu.loss) < 1e-5 * cpu.loss,
    `${s2.loss / valid} vs ${cpu.loss}`,
  );
  const err = scaledError(await read(z.grad, rows * cols), cpu.dlogits);
  assert.ok(err < 1e-5, `dlogits ${err}`);
  await assert.rejects(() => readLossTotals(device, table, 4), /0\.\.3/);
  g.dispose();
});

Deno.test("bf16 casts: narrowing rounds like toBf16Array (odd length), widening is exact", async () => {
  const r = rng(9);
  const n = 1001;
  const X = random(n, r, 100);
  const g = new Graph(device, { backward: false });
  const p = new Parameter(device, "w", [n], X, "bf16");
  const v = g.parameter(p);
  g.finish();
  run(g); // widens p.tensor.param into p.value
  const widened = await read(v.data, n);
  assert.deepEqual(widened, fromBf16Array(toBf16Array(X)));

  // Narrowing: a training graph's epilogue rounds the f32 gradient into the tensor.
  const pipe = nnPipeline(device, "bf16Narrow");
  device.queue.writeBuffer(p.grad, 0, X);
  const [wx, wy] = g.grid(Math.ceil(n / 2));
  dispatchWith(
    device,
    pipe,
    [g.uniform(LENGTH, { length: n }), p.grad, p.tensor.grad],
    wx,
    wy,
  );
  const bits = new Uint16Array(
    await readBuffer(device, p.tensor.grad),
    0,
    n + 1,
  );
  assert.deepEqual(bits.subarray(0, n), toBf16Array(X));
  assert.equal(bits[n], 0); // the unused half of the last word
  g.dispose();
  p.destroy();
});

Deno.test("batch gather: rows by index from the current order, normalized; rows past valid are zero", async () => {
  const data = syntheticImageData({ train: 50, test: 1, seed: 4 });
  const norm = pixelStats(data.train);
  const ds = new GpuDataset(device, data.train, norm);
  const order = Uint32Array.from({ length: 50 }, (_, i) => (i * 7) % 50);
  ds.setOrder(order);
  const g = new Graph(device, { backward: false });
  const input = ds.input(g, 4);
  g.finish();
  // Every element of every row; the second gather overwrites the first, so
  // an element it skips keeps a stale (nonzero) value and fails.
  for (const [start, valid] of [[20, 4], [10, 3]]) {
    input.select(start, valid);
    run(g);
    const x = await read(input.x.data, 4 * 784);
    const labels = new Uint32Array(
      await readBuffer(device, input.labels),
      0,
      4,
    );
    for (let row = 0; row < 4; row++) {
      const s = order[start + row];
      assert.equal(labels[row], row < valid ? data.train.labels[s] : 0);
      for (let j = 0; j < 784; j++) {
        const want = row < valid
          ? (data.train.images[s * 784 + j] / 255 - norm.mean) / norm.std
          : 0;
        const got = x[row * 784 + j];
        assert.ok(
          Math.abs(got - want) < 1e-5,
          `start ${start}, row ${row}, feature ${j}: ${got}, expected ${want}`,
        );
      }
    }
  }
  assert.throws(() => input.select(48, 3), /does not fit/);
  g.dispose();
  ds.destroy();
});

for (
  const [activationKind, dtype] of [["relu", "f32"], ["gelu", "f32"], [
    "relu",
    "bf16",
  ]] as const
) {
  Deno.test(`MLP gradients on the GPU (${activationKind}, ${dtype} parameters) equal the f64 CPU reference`, async () => {
    const sizes = [20, 12, 9, 10];
    const net = mlp(device, {
      sizes,
      activation: activationKind,
      dtype,
      seed: 3,
    });
    const rows = 6;
    const valid = 5;
    const data = syntheticImageData({ train: rows, test: 1, seed: 7 });
    // A 20-feature data set: the first 20 pixels of each synthetic image.
    const images = new Uint8Array(rows * 20);
    for (let i = 0; i < rows; i++) {
      images.set(
        data.train.images.subarray(i * 784 + 300, i * 784 + 320),
        i * 20,
      );
    }
    const set = { ...data.train, images, rows: 4, cols: 5 };
    const norm = pixelStats(set);
    const ds = new GpuDataset(device, set, norm);
    const g = new Graph(device);
    const input = ds.input(g, rows);
    const table = softmaxCrossEntropy(
      net.forward(input.x),
      input.labels,
      input.batch,
    );
    g.finish();
    input.select(0, valid);
    run(g);

    const cpu = new MlpCpu(sizes, activationKind, Float64Array);
    for (const [i, p] of net.parameters().entries()) {
      cpu.params[i].set(await readTensor(device, p.tensor));
      assert.equal(p.name, cpu.names[i]);
    }
    const x = Float64Array.from(
      images,
      (b) => (b / 255 - norm.mean) / norm.std,
    );
    const want = cpu.lossAndGrads(x, set.labels, rows, valid);
    const [totals] = await readLossTotals(device, table, 1);
    assert.ok(Math.abs(totals.loss / valid - want.loss) < 1e-5 * want.loss);
    for (const [i, p] of net.parameters().entries()) {
      const got = dtype === "bf16"
        ? await readTensor(device, p.tensor, "grad")
        : await read(p.grad, p.size);
      const expected = dtype === "bf16"
        ? fromBf16Array(toBf16Array(Float32Array.from(want.grads[i])))
        : want.grads[i];
      // bf16 gradients: one rounding of the f32 result, so allow a bf16 ulp.
      const err = scaledError(got, expected);
      assert.ok(err < (dtype === "bf16" ? 8e-3 : 2e-5), `${p.name}: ${err}`);
    }
    g.dispose();
    ds.destroy();
    net.destroy();
  });
}

Deno.test("a weight used twice gets the sum of both gradients (the second write accumulates)", async () => {
  const r = rng(13);
  const [rows, width] = [5, 8];
  const W = random(width * width, r, 0.5);
  const Bv = random(width, r, 0.5);
  const X = random(rows * width, r);
  const w = new Parameter(device, "w", [width, width], W);
  const b = new Parameter(device, "b", [width], Bv);
  const g = new Graph(device);
  const x = g.value([rows, width]);
  upload(x, X);
  // h = relu(x·Wᵀ + b); z = h·Wᵀ + b; loss = CE(z).
  const h = activation(linear(x, g.parameter(w), g.parameter(b)), "relu");
  const z = linear(h, g.parameter(w), g.parameter(b));
  const labels = Uint32Array.from({ length: rows }, (_, i) => i % width);
  const lab = g.buffer(4 * rows, "labels");
  device.queue.writeBuffer(lab, 0, labels);
  softmaxCrossEntropy(
    z,
    lab,
    g.uniform(BATCH, { start: 0, valid: rows, slot: 0 }),
  );
  g.finish();
  assert.ok(g.backwardDispatches.some((d) => d.label.startsWith("matmul")));
  run(g);

  // The same network on the CPU, by hand, in f64.
  const f = (a: Float32Array) => Float64Array.from(a);
  const lin = (inp: Float64Array) => {
    const out = new Float64Array(rows * width);
    matmulCpu(inp, f(W), { m: rows, n: width, k: width, transB: true }, out);
    for (let i = 0; i < out.length; i++) out[i] += Bv[i % width];
    return out;
  };
  const z1 = lin(f(X));
  const h1 = z1.map((v) => Math.max(v, 0));
  const z2 = lin(h1);
  const ce = softmaxCrossEntropyCpu(z2, labels, rows, width);
  const dW = new Float64Array(width * width);
  const dB = new Float64Array(width);
  const addBias = (dz: Float64Array) => {
    for (let i = 0; i < dz.length; i++) dB[i % width] += dz[i];
  };
  matmulCpu(
    ce.dlogits,
    h1,
    { m: width, n: width, k: rows, transA: true },
    dW,
    true,
  );
  addBias(ce.dlogits);
  const dh = new Float64Array(rows * width);
  matmulCpu(ce.dlogits, f(W), { m: rows, n: width, k: width }, dh);
  const dz1 = dh.map((v, i) => (z1[i] > 0 ? v : 0));
  matmulCpu(dz1, f(X), { m: width, n: width, k: rows, transA: true }, dW, true);
  addBias(dz1);
  assert.ok(scaledError(await read(w.grad, width * width), dW) < 2e-5);
  assert.ok(scaledError(await read(b.grad, width), dB) < 2e-5);
  g.dispose();
  w.destroy();
  b.destroy();
});

Deno.test("graph errors: a parameter without a path to the loss, ops after finish, mismatched shapes", () => {
  const p = new Parameter(device, "orphan", [2], new Float32Array(2));
  const g = new Graph(device);
  g.parameter(p);
  assert.throws(() => g.finish(), /"orphan" gets no gradient/);
  assert.throws(() => g.value([2]), /finished/);
  const h = new Graph(device, { backward: false });
  assert.throws(
    () => matmul(h.value([2, 3]), h.value([4, 5])),
    /inner dimensions/,
  );
  assert.throws(
    () => linear(h.value([2, 3]), h.value([4, 2])),
    /weight must be/,
  );
  assert.throws(() => h.value([2, 0]), /positive integer/);
  assert.throws(
    () => h.encode(device.createCommandEncoder().beginComputePass()),
    /finish/,
  );
  assert.throws(
    () => new Parameter(device, "w", [2, 2], new Float32Array(3)),
    /4 elements, got 3/,
  );
  g.dispose();
  h.dispose();
  p.destroy();
  // writeTensor is used by checkpoints on these tensors: it round-trips.
  const q = new Parameter(
    device,
    "q",
    [3],
    new Float32Array([1, 2, 3]),
    "bf16",
  );
  writeTensor(device, q.tensor, new Float32Array([4, 5, 6]), "param");
  q.destroy();
});
