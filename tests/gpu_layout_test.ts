/**
 * src/gpu/layout.ts: every shared struct is read back on the GPU field by
 * field, by name, from bytes the TypeScript encoder wrote, so an offset that
 * TypeScript and WGSL disagree on fails here; and no kernel file declares a
 * shared struct or constant a second time.
 */

import assert from "node:assert/strict";
import {
  CONFIG,
  FLAG_CONSTANTS,
  GROUP_HYPER,
  LAYOUTS,
  layoutWgsl,
  SEG,
  SEG_TABLE,
  SHARED_CONSTANTS,
  STEP,
  STEP_HEADER_BYTES,
  STEP_READBACK_BYTES,
  StructLayout,
} from "../src/gpu/layout.ts";
import { kernelSource } from "../src/gpu/kernels.ts";
import { readBuffer } from "../src/gpu/buffers.ts";
import { dispatchWith, testDevice } from "./gpu_util.ts";

const device = await testDevice();

/** Distinct, recognisable values for every scalar of a layout (arrays included). */
function sample(layout: StructLayout, seed: number): number[] {
  const words: number[] = [];
  layout.fields.forEach((f, i) => {
    for (let e = 0; e < (f.count ?? 1); e++) {
      words.push(
        f.type === "f32"
          ? new Uint32Array(new Float32Array([seed + i + e / 8]).buffer)[0]
          : (seed << 16) + (i << 8) + e,
      );
    }
  });
  return words;
}

/** WGSL expressions reading every scalar of `layout` through `path`, in order. */
function reads(layout: StructLayout, path: string): string[] {
  return layout.fields.flatMap((f) => {
    const at = (e?: number) =>
      `${path}.${f.name}${e === undefined ? "" : `[${e}]`}`;
    const cast = (x: string) => (f.type === "f32" ? `bitcast<u32>(${x})` : x);
    return f.count === undefined
      ? [cast(at())]
      : Array.from({ length: f.count }, (_, e) => cast(at(e)));
  });
}

/** Runs a shader that copies `exprs` into an output array; returns the words. */
async function readBack(
  decl: string,
  exprs: string[],
  input: Uint8Array<ArrayBuffer>,
  uniform = false,
): Promise<number[]> {
  const code = `${layoutWgsl()}
${decl}
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(1)
fn main() {
${exprs.map((e, i) => `  out[${i}] = ${e};`).join("\n")}
}`;
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code });
  const pipe = device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const size = Math.ceil(input.byteLength / 16) * 16;
  const inBuf = device.createBuffer({
    size,
    usage: (uniform ? GPUBufferUsage.UNIFORM : GPUBufferUsage.STORAGE) |
      GPUBufferUsage.COPY_DST,
  });
  const padded = new Uint8Array(size);
  padded.set(input);
  device.queue.writeBuffer(inBuf, 0, padded);
  const outBuf = device.createBuffer({
    size: 4 * exprs.length,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  dispatchWith(device, pipe, [inBuf, outBuf], 1);
  const err = await device.popErrorScope();
  assert.equal(err, null, err?.message);
  const got = [...new Uint32Array(await readBuffer(device, outBuf))];
  inBuf.destroy();
  outBuf.destroy();
  return got;
}

/** Bytes of a layout with `words` in field order, then `tail` rows. */
function bytesOf(
  layout: StructLayout,
  words: number[],
  tail: number[][] = [],
): Uint8Array<ArrayBuffer> {
  const rowBytes = layout.tail?.of.bytes ?? 0;
  const out = new Uint8Array(layout.bytes + rowBytes * tail.length);
  const view = new DataView(out.buffer);
  // Through the encoder for scalars (what the library does), raw for arrays.
  let w = 0;
  for (const f of layout.fields) {
    if (f.count === undefined) {
      const bits = words[w++];
      const value = f.type === "f32"
        ? new Float32Array(new Uint32Array([bits]).buffer)[0]
        : bits;
      layout.write(view, { [f.name]: value }, 0);
    } else {
      for (let e = 0; e < f.count; e++) {
        view.setUint32(layout.offset(f.name) + 4 * e, words[w++], true);
      }
    }
  }
  tail.forEach((row, i) => {
    const of = layout.tail!.of;
    let r = 0;
    for (const f of of.fields) {
      const bits = row[r++];
      const value = f.type === "f32"
        ? new Float32Array(new Uint32Array([bits]).buffer)[0]
        : bits;
      of.write(view, { [f.name]: value }, layout.bytes + of.bytes * i);
    }
  });
  return out;
}

for (const layout of LAYOUTS) {
  Deno.test(`layout ${layout.name}: the GPU reads every field, by name, where the TypeScript encoder wrote it`, async () => {
    const words = sample(layout, 3);
    const tail = layout.tail
      ? [sample(layout.tail.of, 5), sample(layout.tail.of, 9)]
      : [];
    const exprs = reads(layout, "s");
    if (layout.tail) {
      for (let i = 0; i < tail.length; i++) {
        exprs.push(...reads(layout.tail.of, `s.${layout.tail.name}[${i}]`));
      }
    }
    const uniform = layout === CONFIG;
    const decl = uniform
      ? `@group(0) @binding(0) var<uniform> s: ${layout.name};`
      : `@group(0) @binding(0) var<storage, read> s: ${layout.name};`;
    const got = await readBack(
      decl,
      exprs,
      bytesOf(layout, words, tail),
      uniform,
    );
    assert.deepEqual(got, [...words, ...tail.flat()]);
  });
}

Deno.test("layout: decode inverts encode; offsets are the running sum of 4-byte fields", () => {
  const bytes = SEG.encode({ len: 5, stage_off: 9, tensor: 2 });
  assert.equal(bytes.byteLength, SEG.bytes);
  const back = SEG.decode(bytes);
  assert.equal(back.len, 5);
  assert.equal(back.stage_off, 9);
  assert.equal(back.tensor, 2);
  assert.equal(back.d, 0);
  const f = CONFIG.decode(CONFIG.encode({ beta1: 0.9, window: 10 }));
  assert.equal(f.beta1, Math.fround(0.9));
  assert.equal(f.window, 10);
  let at = 0;
  for (const field of STEP.fields) {
    assert.equal(STEP.offset(field.name), at, field.name);
    at += 4 * (field.count ?? 1);
  }
  assert.equal(STEP_READBACK_BYTES, 44); // skip … c2, calls, bad_call, refused
  assert.equal(STEP_HEADER_BYTES, 64);
  assert.equal(GROUP_HYPER.bytes, 16);
  assert.equal(SEG_TABLE.bytes, 16);
  assert.throws(() => SEG.offset("nope" as "len"), /no field nope/);
  assert.throws(
    () =>
      new StructLayout("X", [{ name: "a", type: "u32" }, {
        name: "a",
        type: "u32",
      }]),
    /declared twice/,
  );
});

Deno.test("layout: declared once: no kernel file declares a shared struct or constant itself", async () => {
  const names = [
    ...LAYOUTS.map((l) => `struct ${l.name}\\b`),
    ...Object.keys(SHARED_CONSTANTS).map((k) => `const ${k}\\b`),
    ...Object.keys(FLAG_CONSTANTS).map((k) => `const ${k}\\b`),
  ];
  const dir = new URL("../kernels/", import.meta.url);
  for await (const e of Deno.readDir(dir)) {
    if (!e.name.endsWith(".wgsl")) continue;
    const text = await Deno.readTextFile(new URL(e.name, dir));
    for (const n of names) {
      assert.doesNotMatch(text, new RegExp(n), `kernels/${e.name}: ${n}`);
    }
  }
  // And every kernel gets exactly one copy of each shared one; the flags'
  // constants go to the prologue alone.
  const shared = names.filter((n) => !/FOUND_INF/.test(n));
  const src = kernelSource("adam");
  for (const n of shared) {
    assert.equal(src.match(new RegExp(n, "g"))?.length, 1, n);
  }
  const prologue = kernelSource("prologue");
  for (const [k, v] of Object.entries(FLAG_CONSTANTS)) {
    assert.equal(src.includes(`const ${k}`), false, `adam: ${k}`);
    assert.equal(
      prologue.match(new RegExp(`const ${k}: u32 = ${v}u;`, "g"))?.length,
      1,
      `prologue: ${k}`,
    );
  }
});
