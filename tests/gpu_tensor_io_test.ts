/**
 * src/gpu/tensor_io.ts: createTensor, writeTensor and readTensor round-trip
 * f32 and bf16 data exactly (odd lengths padded to whole words, offsets
 * honoured), and refuse what does not fit with a TensorMismatchError.
 */

import assert from "node:assert/strict";
import {
  createTensor,
  fromBf16Array,
  readTensor,
  TensorMismatchError,
  toBf16Array,
  writeTensor,
} from "../mod.ts";
import { readBuffer } from "../src/gpu/buffers.ts";
import { rng, testDevice } from "./gpu_util.ts";

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
