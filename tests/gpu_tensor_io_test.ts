/**
 * src/gpu/tensor_io.ts: createTensor, createTensors, writeTensor and
 * readTensor round-trip f32 and bf16 data exactly (odd lengths padded to
 * whole words, offsets honoured), createTensors packs tensors into shared
 * buffers that an optimizer takes as one batch, and every helper refuses
 * what does not fit with a TensorMismatchError.
 */

import assert from "node:assert/strict";
import {
  createTensor,
  createTensors,
  fromBf16Array,
  MicroAdam,
  readTensor,
  TensorMismatchError,
  toBf16Array,
  writeTensor,
} from "../mod.ts";
import { readBuffer } from "../src/gpu/buffers.ts";
import { rng, testDevice } from "./gpu_util.ts";
import { planOf } from "./optim_microadam.ts";

const device = await testDevice();

Deno.test("createTensor: f32 values, bf16 from f32 (rounded), raw bf16 bits, zeros; sizes padded to 4 bytes", async () => {
  const r = rng(5);
  for (const n of [1, 2, 3, 7, 1000]) {
    const values = new Float32Array(n).map(() => 2 * r() - 1);
    const f = createTensor(device, values, { name: "f" });
    assert.equal(f.dtype, "f32");
    assert.equal(f.param.size, 4 * n);
    assert.deepEqual(await readTensor(device, f), values);
    assert.deepEqual(await readTensor(device, f, "grad"), new Float32Array(n));

    const b = createTensor(device, values, { dtype: "bf16" });
    assert.equal(b.param.size, Math.ceil(2 * n / 4) * 4);
    const bits = toBf16Array(values);
    assert.deepEqual(await readTensor(device, b), fromBf16Array(bits));
    const raw = createTensor(device, bits);
    assert.equal(raw.dtype, "bf16");
    assert.deepEqual(toBf16Array(await readTensor(device, raw)), bits);

    const z = createTensor(device, n);
    assert.deepEqual(await readTensor(device, z), new Float32Array(n));
    for (const t of [f, b, raw, z]) {
      t.param.destroy();
      t.grad.destroy();
    }
  }
});

Deno.test("writeTensor: gradient by default, parameters on request, at the tensor's offset; bytes outside untouched", async () => {
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
    GPUBufferUsage.COPY_DST;
  const param = device.createBuffer({ size: 64, usage });
  const grad = device.createBuffer({ size: 64, usage });
  device.queue.writeBuffer(grad, 0, new Float32Array(16).fill(9));
  const t = { param, grad, length: 5, offset: 4, dtype: "bf16" as const };
  writeTensor(device, t, new Float32Array([1, 2, 3, 4, 5]));
  const bytes = new Uint16Array(await readBuffer(device, grad));
  assert.deepEqual(
    Array.from(bytes.subarray(4, 9)),
    Array.from(toBf16Array([1, 2, 3, 4, 5])),
  );
  // The padding of the last word and everything before the offset are kept.
  const nine = toBf16Array([9, 9]);
  assert.deepEqual(Array.from(bytes.subarray(0, 4)), [0, nine[0], 0, nine[1]]);
  assert.deepEqual(
    await readTensor(device, t, "grad"),
    new Float32Array([1, 2, 3, 4, 5]),
  );
  writeTensor(device, t, new Float32Array([6, 7, 8, 9, 10]), "param");
  assert.deepEqual(
    await readTensor(device, t),
    new Float32Array([6, 7, 8, 9, 10]),
  );
  param.destroy();
  grad.destroy();
});

Deno.test("tensor helpers refuse what does not fit, with TensorMismatchErrors naming the problem", () => {
  const t = createTensor(device, 4, { name: "w" });
  const cases: [() => unknown, RegExp][] = [
    [() => createTensor(device, 0), /expected an element count >= 1, got 0/],
    [() => createTensor(device, 2.5), /got 2.5/],
    [() => createTensor(device, new Float32Array(0)), /empty array/],
    [
      () => createTensor(device, [1, 2] as never),
      /expected a Float32Array, a Uint16Array of bf16 bits or an element count/,
    ],
    [
      () => createTensor(device, 4, { dtype: "f16" as never }),
      /dtype: expected "f32" or "bf16", got "f16"/,
    ],
    [
      () => writeTensor(device, t, new Float32Array(5)),
      /tensor "w" has 4 elements, got 5 values/,
    ],
    [
      () => writeTensor(device, t, new Uint16Array(4)),
      /an f32 tensor takes a Float32Array, got Uint16Array\(4\)/,
    ],
  ];
  for (const [f, pattern] of cases) {
    assert.throws(
      f,
      (e: unknown) =>
        e instanceof TensorMismatchError && pattern.test(e.message),
    );
  }
  t.param.destroy();
  t.grad.destroy();
});

Deno.test("createTensors: consecutive tensors share a buffer pair on 256-byte boundaries while they fit; values and zeros read back", async () => {
  const r = rng(9);
  const a = new Float32Array(3).map(() => r());
  const c = new Float32Array(100).map(() => r());
  // Pairs of at most 512 bytes: a (12 B) and b (40 B) share one; c (400 B)
  // does not fit after them (256 + 400 > 512) and opens a second; d (800 B)
  // is larger than a pair and gets its own; e follows in a fourth.
  const [ta, tb, tc, td, te] = createTensors(device, [a, 10, c, 200, 1], {
    names: ["a", "b", "c", "d", "e"],
    maxBufferBytes: 512,
  });
  assert.deepEqual(
    [ta, tb, tc, td, te].map((t) => [t.name, t.offset, t.length, t.dtype]),
    [["a", 0, 3, "f32"], ["b", 64, 10, "f32"], ["c", 0, 100, "f32"], [
      "d",
      0,
      200,
      "f32",
    ], ["e", 0, 1, "f32"]],
  );
  assert.equal(ta.param, tb.param);
  assert.equal(ta.grad, tb.grad);
  assert.equal(new Set([ta, tc, td, te].map((t) => t.param)).size, 4);
  assert.deepEqual([ta.param.size, tc.param.size, td.param.size], [
    296,
    400,
    800,
  ]);
  assert.deepEqual(await readTensor(device, ta), a);
  assert.deepEqual(await readTensor(device, tb), new Float32Array(10));
  assert.deepEqual(await readTensor(device, tc), c);
  assert.deepEqual(await readTensor(device, td, "grad"), new Float32Array(200));
  for (const t of [ta, tc, td, te]) {
    t.param.destroy();
    t.grad.destroy();
  }
});

Deno.test("createTensors: bf16 by default for raw bf16 bits, odd lengths; one MicroAdam batch for tensors in one pair", async () => {
  const bits = [
    toBf16Array(new Float32Array([1, -2, 3])),
    new Uint16Array([0x3f80]),
  ];
  const ts = createTensors(device, bits);
  assert.deepEqual(ts.map((t) => [t.dtype, t.offset]), [["bf16", 0], [
    "bf16",
    128,
  ]]);
  assert.deepEqual(
    await readTensor(device, ts[0]),
    new Float32Array([1, -2, 3]),
  );
  assert.deepEqual(await readTensor(device, ts[1]), new Float32Array([1]));
  const f32 = createTensors(device, [5000, 70001, 3]);
  const opt = new MicroAdam(device, f32, { gatherBelow: 0 });
  try {
    assert.deepEqual(planOf(opt).batches.map((b) => b.segments.length), [3]);
  } finally {
    opt.dispose();
  }
  for (const t of [ts[0], f32[0]]) {
    t.param.destroy();
    t.grad.destroy();
  }
});

Deno.test("createTensors refuses a name list of another length, bad inits and a bad maxBufferBytes, naming them", () => {
  assert.throws(
    () => createTensors(device, [1, 2], { names: ["a"] }),
    (e: Error) =>
      e instanceof TensorMismatchError &&
      /one name per tensor \(2\), got 1/.test(e.message),
  );
  assert.throws(
    () => createTensors(device, [1, 0]),
    (e: Error) =>
      e instanceof TensorMismatchError &&
      /createTensors\[1\]: expected an element count >= 1, got 0/.test(
        e.message,
      ),
  );
  assert.throws(
    () => createTensors(device, [new Float32Array(0)]),
    (e: Error) =>
      e instanceof TensorMismatchError &&
      /at least one element/.test(e.message),
  );
  assert.throws(
    () => createTensors(device, [1], { maxBufferBytes: 100 }),
    (e: Error) =>
      e instanceof TensorMismatchError &&
      /maxBufferBytes: expected an integer in \[256, \d+\].*got 100/.test(
        e.message,
      ),
  );
  assert.throws(
    () => createTensors(device, "w" as unknown as number[]),
    (e: Error) =>
      e instanceof TensorMismatchError && /expected an array/.test(e.message),
  );
  // A Uint16Array for an f32 tensor is refused (before any buffer exists).
  assert.throws(
    () =>
      createTensors(device, [new Float32Array(2), new Uint16Array(2)], {
        dtype: "f32",
      }),
    (e: Error) =>
      e instanceof TensorMismatchError &&
      /an f32 tensor takes a Float32Array/.test(e.message),
  );
  assert.deepEqual(createTensors(device, []), []);
});
