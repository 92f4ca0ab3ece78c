/**
 * src/gpu/kernels.ts: every kernel compiles without validation errors (with
 * and without the BF16 override where the kernel declares it), the pipeline
 * cache, and dispatchSize's folding of large dispatches into two dimensions
 * (closed forms, and on the GPU through grid.wgsl's linear_workgroup).
 */

import assert from "node:assert/strict";
import {
  dispatchSize,
  KERNEL_NAMES,
  type KernelName,
  kernelSource,
  pipeline,
} from "../src/gpu/kernels.ts";
import { readBuffer } from "../src/gpu/buffers.ts";
import { requestDevice } from "../src/gpu/device.ts";
import { hasExactFma } from "../src/gpu/capabilities.ts";
import grid from "../kernels/grid.wgsl" with { type: "text" };
import { dispatchWith, testDevice } from "./gpu_util.ts";

const device = await testDevice();

/** Kernels whose source declares `override BF16`. */
const WITH_BF16: KernelName[] = [
  "checkFinite",
  "checkFinite4",
  "microadamSelect",
  "microadamUpdate",
  "microadamSelectFast",
  "microadamUpdateFast",
];

/** Runs `f` inside a validation error scope and returns the error message, if any. */
async function validationError(f: () => void): Promise<string | undefined> {
  device.pushErrorScope("validation");
  try {
    f();
  } catch (e) {
    await device.popErrorScope();
    throw e;
  }
  const err = await device.popErrorScope();
  return err?.message;
}

Deno.test("kernelSource: every kernel has one `fn main` entry point; BF16 is declared exactly where expected", () => {
  for (const name of KERNEL_NAMES) {
    const src = kernelSource(name);
    assert.equal(src.match(/\bfn main\s*\(/g)?.length, 1, name);
    assert.match(src, /@compute\s+@workgroup_size\(/, name);
    assert.equal(
      /override\s+BF16\b/.test(src),
      WITH_BF16.includes(name),
      `${name}: BF16 override declared?`,
    );
  }
});

for (const name of KERNEL_NAMES) {
  Deno.test(`compile: ${name} has no compilation errors and builds a pipeline without validation errors`, async () => {
    const module = device.createShaderModule({
      label: `${name} test`,
      code: kernelSource(name),
    });
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === "error");
    assert.deepEqual(
      errors.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`),
      [],
    );
    const variants: Record<string, number>[] = WITH_BF16.includes(name)
      ? [{}, { BF16: 1 }, { BF16: 0 }]
      : [{}];
    for (const constants of variants) {
      let p: GPUComputePipeline | undefined;
      const msg = await validationError(() => {
        p = pipeline(device, name, constants);
        // Touch the layout: an invalid pipeline fails here too.
        p.getBindGroupLayout(0);
      });
      assert.equal(msg, undefined, `${name} ${JSON.stringify(constants)}`);
      assert.ok(p instanceof GPUComputePipeline);
    }
  });
}

Deno.test("compile: the workgroup reductions compile in both variants (subgroups and workgroup memory only)", async () => {
  for (const name of ["microadamSelectFast", "microadamUpdateFast"] as const) {
    for (const subgroups of [false, true]) {
      const src = kernelSource(name, { subgroups });
      assert.equal(src.includes("subgroupAdd"), subgroups, name);
      const info = await device.createShaderModule({ code: src })
        .getCompilationInfo();
      assert.deepEqual(
        info.messages.filter((m) => m.type === "error").map((m) => m.message),
        [],
        `${name}, subgroups ${subgroups}`,
      );
    }
  }
});

Deno.test("compile: the validation scope does catch an error (BF16 on a kernel without it, a broken shader)", async () => {
  // Guards the test above: if the scope missed errors, it could not fail.
  // A fresh device, so that no invalid pipeline lands in the shared cache.
  const other = await requestDevice();
  try {
    other.pushErrorScope("validation");
    pipeline(other, "adam", { BF16: 1 }).getBindGroupLayout(0);
    const err = await other.popErrorScope();
    assert.match(err?.message ?? "", /BF16/);

    const broken = other.createShaderModule({
      code: kernelSource("adam").replace("fn main", "fn main(("),
    });
    const info = await broken.getCompilationInfo();
    assert.ok(info.messages.some((m) => m.type === "error"));
  } finally {
    other.destroy();
  }
});

Deno.test("pipeline cache: same object for the same name and constants, different otherwise, per device", async () => {
  const a = pipeline(device, "microadamSelect");
  assert.equal(pipeline(device, "microadamSelect"), a);
  assert.equal(pipeline(device, "microadamSelect", {}), a);
  const bf = pipeline(device, "microadamSelect", { BF16: 1 });
  assert.notEqual(bf, a);
  assert.equal(pipeline(device, "microadamSelect", { BF16: 1 }), bf);
  // Constants in any order name the same pipeline, and its label names them.
  const x = hasExactFma(device) ? 1 : 0;
  assert.equal(
    pipeline(device, "microadamSelect", { EXACT_FMA: x, BF16: 1 }),
    bf,
  );
  assert.equal(bf.label, `microadamSelect BF16=1 EXACT_FMA=${x}`);
  assert.notEqual(pipeline(device, "microadamUpdate"), a);
  assert.notEqual(pipeline(device, "microadamUpdate", { BF16: 1 }), bf);
  const distinct = new Set(
    KERNEL_NAMES.flatMap((n) => [
      pipeline(device, n),
      ...(WITH_BF16.includes(n) ? [pipeline(device, n, { BF16: 1 })] : []),
    ]),
  );
  assert.equal(distinct.size, KERNEL_NAMES.length + WITH_BF16.length);
  // Another device gets its own pipelines.
  const other = await requestDevice();
  try {
    const b = pipeline(other, "microadamSelect");
    assert.notEqual(b, a);
    assert.equal(pipeline(other, "microadamSelect"), b);
  } finally {
    other.destroy();
  }
});

Deno.test("dispatchSize: closed forms", () => {
  const M = 65535;
  const cases: [number, number, [number, number]][] = [
    [0, M, [1, 1]],
    [1, M, [1, 1]],
    [M, M, [M, 1]],
    [M + 1, M, [32768, 2]], // y = 2, x = ceil(65536 / 2)
    [100_000, M, [50_000, 2]],
    [2 * M, M, [M, 2]],
    [2 * M + 1, M, [43691, 3]], // ceil(131071 / 3)
    [M * M, M, [M, M]],
    [10, 3, [3, 4]], // y = ceil(10/3) = 4, x = ceil(10/4) = 3
    [8, 3, [3, 3]],
    [7, 7, [7, 1]],
    [50, 7, [7, 8]],
  ];
  for (const [count, max, want] of cases) {
    assert.deepEqual(
      dispatchSize(count, max),
      want,
      `dispatchSize(${count}, ${max})`,
    );
  }
});

Deno.test("dispatchSize: x·y >= count, x <= limit, y = ceil(count / limit), and at most y - 1 spare workgroups", () => {
  let checked = 0;
  for (const max of [1, 2, 3, 7, 16, 255, 65535]) {
    const counts = new Set<number>();
    for (let c = 1; c <= Math.min(max * max, 3000); c++) counts.add(c);
    for (const k of [1, 2, 3, 17, max - 1, max]) {
      for (const d of [-1, 0, 1]) {
        const c = k * max + d;
        if (c >= 1 && c <= max * max) counts.add(c);
      }
    }
    for (const count of counts) {
      const [x, y] = dispatchSize(count, max);
      const where = `dispatchSize(${count}, ${max}) = [${x}, ${y}]`;
      assert.ok(Number.isInteger(x) && Number.isInteger(y), where);
      assert.ok(x >= 1 && x <= max && y >= 1 && y <= max, where);
      assert.ok(x * y >= count, where);
      assert.equal(y, Math.ceil(count / max), where);
      assert.ok(x * y - count < y, `${where} wastes ${x * y - count}`);
      checked++;
    }
  }
  console.log(`dispatchSize: ${checked} (count, limit) pairs`);
});

Deno.test("dispatchSize + linear_workgroup on the GPU: every workgroup index < count is hit exactly once", async () => {
  const shader = grid + /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> hits: array<atomic<u32>>;
@compute @workgroup_size(1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let w = linear_workgroup(wid, nwg);
  if (w < arrayLength(&hits) - 1u) { atomicAdd(&hits[w], 1u); }
  else { atomicAdd(&hits[arrayLength(&hits) - 1u], 1u); } // spare workgroups
}`;
  const module = device.createShaderModule({ code: shader });
  const p = device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const limit = device.limits.maxComputeWorkgroupsPerDimension;
  for (const [count, max] of [[1000, 7], [4099, 64], [limit + 5, limit]]) {
    const [x, y] = dispatchSize(count, max);
    const hits = device.createBuffer({
      size: 4 * (count + 1),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
    });
    dispatchWith(device, p, [hits], x, y);
    const got = new Uint32Array(await readBuffer(device, hits));
    hits.destroy();
    let wrong = 0;
    for (let i = 0; i < count; i++) if (got[i] !== 1) wrong++;
    assert.equal(wrong, 0, `(${count}, ${max}): ${wrong} indices not hit once`);
    assert.equal(got[count], x * y - count, `(${count}, ${max}) spare`);
  }
});
