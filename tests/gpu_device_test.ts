/**
 * src/gpu/device.ts (requestDevice: limits, features, the errors that say
 * how to get an adapter) and src/gpu/buffers.ts (createFilled, readRanges,
 * readBuffer round trips, packBuffers).
 */

import assert from "node:assert/strict";
import { GpuUnavailableError } from "../src/errors.ts";
import { requestDevice } from "../src/gpu/device.ts";
import {
  createFilled,
  packBuffers,
  readBuffer,
  readRanges,
} from "../src/gpu/buffers.ts";
import { rng, testDevice } from "./gpu_util.ts";

const RAISED = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupsPerDimension",
] as const;

/** Runs `f` with `navigator.gpu` replaced by `gpu`, restoring it afterwards. */
async function withGpu<T>(gpu: unknown, f: () => Promise<T>): Promise<T> {
  const own = Object.getOwnPropertyDescriptor(navigator, "gpu");
  Object.defineProperty(navigator, "gpu", {
    value: gpu,
    configurable: true,
    writable: true,
  });
  try {
    return await f();
  } finally {
    if (own) Object.defineProperty(navigator, "gpu", own);
    else delete (navigator as unknown as { gpu?: unknown }).gpu;
    assert.ok(navigator.gpu instanceof GPU, "navigator.gpu restored");
  }
}

/** Asserts that `p` rejects with a GpuUnavailableError matching every pattern. */
async function rejectsUnavailable(p: Promise<unknown>, ...patterns: RegExp[]) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof GpuUnavailableError, `got ${e}`);
    assert.equal(e.name, "GpuUnavailableError");
    for (const re of patterns) assert.match(e.message, re);
    return true;
  });
}

const HOW_TO = [/mesa-vulkan-drivers/, /Vulkan/, /MicroAdamCpu/];

Deno.test("requestDevice: the adapter's maximum limits, and timestamp-query when the adapter has it", async () => {
  const adapter = await navigator.gpu.requestAdapter({
    powerPreference: "high-performance",
  });
  assert.ok(adapter, "this machine has an adapter (llvmpipe at least)");
  const device = await requestDevice();
  try {
    assert.ok(device instanceof GPUDevice);
    assert.equal(
      device.limits.maxStorageBufferBindingSize,
      adapter.limits.maxStorageBufferBindingSize,
    );
    for (const name of RAISED) {
      assert.equal(device.limits[name], adapter.limits[name], name);
    }
    // Above the WebGPU defaults (128 MiB binding, 256 workgroups per dim...).
    assert.ok(device.limits.maxStorageBufferBindingSize >= 128 * 2 ** 20);
    assert.equal(
      device.features.has("timestamp-query"),
      adapter.features.has("timestamp-query"),
    );
    console.log(
      `adapter: ${adapter.info.description}; binding limit ${device.limits.maxStorageBufferBindingSize}; timestamp-query ${
        device.features.has("timestamp-query")
      }`,
    );
  } finally {
    device.destroy();
  }
});

Deno.test("requestDevice: extra requiredLimits are requested; one above the adapter's maximum is refused with GpuUnavailableError", async () => {
  const adapter = (await navigator.gpu.requestAdapter())!;
  const device = await requestDevice({
    requiredLimits: { maxBindGroups: adapter.limits.maxBindGroups },
  });
  try {
    assert.equal(device.limits.maxBindGroups, adapter.limits.maxBindGroups);
  } finally {
    device.destroy();
  }
  await rejectsUnavailable(
    requestDevice({
      requiredLimits: {
        maxStorageBufferBindingSize:
          adapter.limits.maxStorageBufferBindingSize +
          4,
      },
    }),
    /the WebGPU adapter refused a device/,
  );
});

Deno.test({
  name:
    "requestDevice: no navigator.gpu -> GpuUnavailableError saying how to get an adapter",
  async fn() {
    await withGpu(undefined, async () => {
      await rejectsUnavailable(
        requestDevice(),
        /navigator\.gpu is undefined/,
        ...HOW_TO,
      );
    });
  },
});

Deno.test("requestDevice: requestAdapter() returning null or throwing -> GpuUnavailableError saying how to get an adapter", async () => {
  const asked: unknown[] = [];
  const none = {
    requestAdapter: (o: unknown) => {
      asked.push(o);
      return Promise.resolve(null);
    },
  };
  await withGpu(none, async () => {
    await rejectsUnavailable(
      requestDevice(),
      /no WebGPU adapter found/,
      ...HOW_TO,
    );
    await rejectsUnavailable(requestDevice({ powerPreference: "low-power" }));
  });
  assert.deepEqual(asked, [
    { powerPreference: "high-performance" },
    { powerPreference: "low-power" },
  ]);
  const failing = {
    requestAdapter: () => Promise.reject(new Error("driver exploded")),
  };
  await withGpu(failing, async () => {
    await rejectsUnavailable(
      requestDevice(),
      /requesting a WebGPU adapter failed: driver exploded/,
      ...HOW_TO,
    );
  });
});

Deno.test("requestDevice: asks a (fake) adapter for its maxima, the caller's extra limits, timestamp-query only when present, and subgroups unless declined or refused", async () => {
  const limits: Record<string, number> = {
    maxStorageBufferBindingSize: 1000,
    maxBufferSize: 2000,
    maxComputeWorkgroupStorageSize: 3000,
    maxStorageBuffersPerShaderStage: 9,
    maxComputeInvocationsPerWorkgroup: 512,
    maxComputeWorkgroupSizeX: 256,
    maxComputeWorkgroupsPerDimension: 70000,
    maxBindGroups: 4,
  };
  const requiredLimits = {
    maxStorageBufferBindingSize: 1000,
    maxBufferSize: 1500, // the caller's value wins
    maxComputeWorkgroupStorageSize: 3000,
    maxStorageBuffersPerShaderStage: 9,
    maxComputeInvocationsPerWorkgroup: 512,
    maxComputeWorkgroupSizeX: 256,
    maxComputeWorkgroupsPerDimension: 70000,
    maxBindGroups: 3,
  };
  for (const hasTimestamps of [true, false]) {
    for (const subgroups of ["granted", "refused", "declined"] as const) {
      const got: GPUDeviceDescriptor[] = [];
      const sentinel = { fake: "device" };
      const adapter = {
        limits,
        features: new Set(
          hasTimestamps ? ["timestamp-query", "shader-f16"] : [],
        ),
        requestDevice: (d: GPUDeviceDescriptor) => {
          got.push(d);
          const asked = [...(d.requiredFeatures ?? [])].includes(
            "subgroups" as GPUFeatureName,
          );
          return asked && subgroups === "refused"
            ? Promise.reject(new Error("no subgroups here"))
            : Promise.resolve(sentinel);
        },
      };
      const device = await withGpu(
        { requestAdapter: () => Promise.resolve(adapter) },
        () =>
          requestDevice({
            requiredLimits: { maxBufferSize: 1500, maxBindGroups: 3 },
            subgroups: subgroups !== "declined",
          }),
      );
      assert.equal(device as unknown, sentinel);
      const base = hasTimestamps ? ["timestamp-query"] : [];
      const withSubgroups = {
        requiredLimits,
        requiredFeatures: [...base, "subgroups"],
      };
      const without = { requiredLimits, requiredFeatures: base };
      assert.deepEqual(
        got,
        subgroups === "granted"
          ? [withSubgroups]
          : subgroups === "refused"
          ? [withSubgroups, without]
          : [without],
        `${hasTimestamps} ${subgroups}`,
      );
    }
  }
});

// ---- buffers ---------------------------------------------------------------------

const COPY = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;

Deno.test("createFilled + readBuffer: round trips of word-sized data, views at an offset, sizes rounded up to 4 (>= 4)", async () => {
  const device = await testDevice();
  const r = rng(21);
  for (const n of [1, 2, 3, 64, 1001]) {
    const data = new Float32Array(n).map(() => r() - 0.5);
    const b = createFilled(device, data, COPY, `f32 x ${n}`);
    assert.equal(b.size, 4 * n);
    assert.equal(b.label, `f32 x ${n}`);
    assert.ok(b.usage & GPUBufferUsage.COPY_DST, "COPY_DST added");
    assert.ok(b.usage & GPUBufferUsage.STORAGE);
    assert.deepEqual(new Float32Array(await readBuffer(device, b)), data);
    b.destroy();
  }
  // A view into the middle of a larger buffer.
  const big = new Uint32Array([9, 8, 7, 6, 5, 4]);
  const view = new Uint32Array(big.buffer, 8, 3);
  const b = createFilled(device, view, COPY, "view");
  assert.deepEqual([...new Uint32Array(await readBuffer(device, b))], [
    7,
    6,
    5,
  ]);
  b.destroy();
  // Empty data still gives a (zeroed) 4-byte buffer.
  const e = createFilled(device, new Uint8Array(0), COPY, "empty");
  assert.equal(e.size, 4);
  assert.deepEqual([...new Uint8Array(await readBuffer(device, e))], [
    0,
    0,
    0,
    0,
  ]);
  e.destroy();
  // bf16 data with an even count.
  const h = createFilled(
    device,
    new Uint16Array([0x3f80, 0xbfc0]),
    COPY,
    "bf16",
  );
  assert.deepEqual([...new Uint16Array(await readBuffer(device, h))], [
    0x3f80,
    0xbfc0,
  ]);
  h.destroy();
});

Deno.test("createFilled: data whose byte length is not a multiple of 4 is written in full (the tail word zero-padded)", async () => {
  const device = await testDevice();
  for (const n of [1, 3, 5, 6, 7, 13]) {
    const data = new Uint8Array(n).map((_, i) => i + 1);
    const b = createFilled(device, data, COPY, `u8 x ${n}`);
    assert.equal(b.size, Math.ceil(n / 4) * 4);
    const want = new Uint8Array(b.size);
    want.set(data);
    assert.deepEqual(
      [...new Uint8Array(await readBuffer(device, b))],
      [...want],
      `${n} bytes`,
    );
    b.destroy();
  }
  // bf16 with an odd count (3 values, 6 bytes).
  const h = createFilled(device, new Uint16Array([1, 2, 3]), COPY, "bf16 x 3");
  assert.deepEqual([...new Uint16Array(await readBuffer(device, h))], [
    1,
    2,
    3,
    0,
  ]);
  h.destroy();
});

Deno.test("readRanges: several ranges of several buffers in one call, odd sizes, zero sizes, in order", async () => {
  const device = await testDevice();
  const a = createFilled(
    device,
    new Uint8Array(256).map((_, i) => i),
    COPY,
    "a",
  );
  const b = createFilled(
    device,
    new Uint8Array(64).map((_, i) => 255 - i),
    COPY,
    "b",
  );
  const ranges = [
    { buffer: a, offset: 0, size: 5 },
    { buffer: b, offset: 8, size: 3 },
    { buffer: a, offset: 252, size: 4 },
    { buffer: a, offset: 16, size: 0 },
    { buffer: b, offset: 0, size: 64 },
    { buffer: a, offset: 100, size: 1 },
    { buffer: a, offset: 0, size: 5 }, // the same range again
  ];
  const got = await readRanges(device, ranges);
  assert.equal(got.length, ranges.length);
  const src = (buf: GPUBuffer, i: number) => (buf === a ? i : 255 - i);
  ranges.forEach((r, k) => {
    assert.ok(got[k] instanceof Uint8Array);
    assert.equal(got[k].length, r.size, `range ${k} length`);
    assert.deepEqual(
      [...got[k]],
      Array.from({ length: r.size }, (_, i) => src(r.buffer, r.offset + i)),
      `range ${k}`,
    );
  });
  // Each result owns its bytes (not a view into one shared mapping).
  got[0][0] = 99;
  assert.equal(got[6][0], 0);
  assert.deepEqual(await readRanges(device, []), []);
  // readBuffer reads the whole buffer.
  const whole = new Uint8Array(await readBuffer(device, b));
  assert.deepEqual([...whole], Array.from({ length: 64 }, (_, i) => 255 - i));
  a.destroy();
  b.destroy();
});

Deno.test("packBuffers: ranges in order, aligned, a new buffer where the next would pass maxBytes, each buffer its contents' size; the ranges hold data apart", async () => {
  const device = await testDevice();
  const usage = GPUBufferUsage.STORAGE | COPY | GPUBufferUsage.COPY_DST;
  const { buffers, ranges } = packBuffers(device, [10, 0, 256, 600, 300, 4], {
    label: "packed",
    usage,
    align: 256,
    maxBytes: 1024,
  });
  // 10 -> 12 bytes at 0; 0 -> 4 at 256; 256 at 512; 600 does not fit after
  // 768 in 1024: a new buffer; 300 cannot follow at 768 (past 1024): a
  // third; 4 at 512 there.
  assert.deepEqual(
    ranges.map((r) => [buffers.indexOf(r.buffer), r.offset, r.size]),
    [[0, 0, 12], [0, 256, 4], [0, 512, 256], [1, 0, 600], [2, 0, 300], [
      2,
      512,
      4,
    ]],
  );
  assert.deepEqual(buffers.map((b) => b.size), [768, 600, 516]);
  assert.deepEqual(buffers.map((b) => b.label), [
    "packed 0",
    "packed 1",
    "packed 2",
  ]);
  // Written and read back range by range: nothing overlaps.
  ranges.forEach((r, i) =>
    device.queue.writeBuffer(
      r.buffer,
      r.offset,
      new Uint8Array(r.size).fill(i + 1),
    )
  );
  const got = await readRanges(device, ranges);
  got.forEach((g, i) => assert.ok(g.every((x) => x === i + 1), `range ${i}`));
  // The device's limits by default; one buffer when everything fits.
  const one = packBuffers(device, [8, 8], { label: "one", usage });
  assert.equal(one.buffers.length, 1);
  assert.equal(one.buffers[0].label, "one");
  assert.equal(
    one.ranges[1].offset,
    device.limits.minStorageBufferOffsetAlignment,
  );
  assert.throws(
    () => packBuffers(device, [2048], { label: "x", usage, maxBytes: 1024 }),
    (e: Error) =>
      e instanceof RangeError &&
      /at most 1024 bytes \(the largest buffer\), got 2048/.test(e.message),
  );
  for (const b of [...buffers, ...one.buffers]) b.destroy();
});
