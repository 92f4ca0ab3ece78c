/**
 * kernels/ef_quant.wgsl's quantizer on the GPU against the CPU reference's
 * (src/reference/microadam.ts, storeErrorFeedback): the code of a residual
 * r in a block with bf16 statistics (mn, mx) is
 * floor(f32(f32(f32(r − mn) / u) + 0.5)) clamped to 0..15, with
 * u = f32(f32(mx − mn) / 15). The kernel takes a multiply by 1/u where that
 * cannot change the code, one exact fma near a half code (quantize_undecided)
 * and the exact division elsewhere; quantize_exact (the division alone, as
 * the bf16 select kernel's undecided lanes take it) and quantize_undecided
 * are checked on their own too. The cases
 * concentrate on residuals a few ulps from every rounding boundary. A device
 * that flushes subnormals (WGSL allows it; the H200 does) cannot give the
 * reference's code where a value is subnormal: there those cases are counted
 * apart and every other one must match.
 */

import assert from "node:assert/strict";
import numeric from "../kernels/numeric.wgsl" with { type: "text" };
import efQuant from "../kernels/ef_quant.wgsl" with { type: "text" };
import { bf16ToNumber } from "../src/numeric/bf16.ts";
import { readBuffer } from "../src/gpu/buffers.ts";
import { hasExactFma } from "../src/gpu/capabilities.ts";
import { dispatchWith, rng, testDevice } from "./gpu_util.ts";

const device = await testDevice();
const WG = 64;

// (r, mn, mx) as f32 bits -> the code by `fn` (0 where u = 0, which
// quantize_undecided and quantize_exact leave to their callers).
const harness = (fn: string) => /* wgsl */ `
@group(0) @binding(0) var<storage, read> inp: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x + g.y * ${WG}u * 65535u;
  if (i >= arrayLength(&out)) { return; }
  let r = bitcast<f32>(inp[3u * i]);
  let mn = bitcast<f32>(inp[3u * i + 1u]);
  let qz = ef_quantizer(mn, bitcast<f32>(inp[3u * i + 2u]));
  if (qz.u == 0.0) {
    out[i] = 0u;
  } else {
    out[i] = ${fn}(r, qz);
  }
}
`;

const fr = Math.fround;
const fb = new Float32Array(1);
const ub = new Uint32Array(fb.buffer);
const bitsOf = (x: number) => {
  fb[0] = x;
  return ub[0];
};
const fromBits = (b: number) => {
  ub[0] = b >>> 0;
  return fb[0];
};

/**
 * Whether the device flushes f32 subnormals to zero (WGSL allows it; the
 * H200 under Vulkan does, llvmpipe does not): twice the smallest subnormal.
 */
async function flushesSubnormals(): Promise<boolean> {
  const module = device.createShaderModule({
    label: "subnormal probe",
    code: `
@group(0) @binding(0) var<storage, read_write> io: array<u32>;
@compute @workgroup_size(1)
fn main() {
  let x = bitcast<f32>(io[0]);
  io[0] = bitcast<u32>(x + x);
}`,
  });
  const p = device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const io = device.createBuffer({
    size: 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST |
      GPUBufferUsage.COPY_SRC,
  });
  device.queue.writeBuffer(io, 0, new Uint32Array([1]));
  dispatchWith(device, p, [io], 1);
  const got = new Uint32Array(await readBuffer(device, io))[0];
  io.destroy();
  return got !== 2;
}

/** A nonzero f32 below the normal range. */
const subnormal = (x: number) => x !== 0 && Math.abs(x) < 2 ** -126;

/**
 * Whether a case computes with a subnormal value (r, the statistics, u or
 * r − mn): a device that flushes them cannot give the reference's code.
 */
const touchesSubnormals = (c: Case) =>
  [c.r, c.mn, c.mx, fr(fr(c.mx - c.mn) / 15), fr(c.r - c.mn)].some(subnormal);

/** The CPU reference's code (storeErrorFeedback). */
function cpuCode(r: number, mn: number, mx: number): number {
  const u = fr(fr(mx - mn) / 15);
  if (u === 0) return 0;
  const q = Math.floor(fr(fr(fr(r - mn) / u) + 0.5));
  return q < 0 ? 0 : q > 15 ? 15 : q;
}

/**
 * The f32 `steps` values above x (below for negative steps), across zero
 * too: x's place among the f32 values, with ±0 at 0.
 */
const nudge = (x: number, steps: number) => {
  const b = bitsOf(x);
  const n = (b >= 0x80000000 ? -(b & 0x7fffffff) : b) + steps;
  return n >= 0 ? fromBits(n) : -fromBits(-n);
};

interface Case {
  r: number;
  mn: number;
  mx: number;
  /** The binary exponent the statistics were drawn near. */
  scale: number;
}

function cases(): Case[] {
  const r = rng(11);
  const out: Case[] = [];
  // A bf16 of binary exponent lo..hi; below -126, a subnormal one.
  const bf16 = (lo: number, hi: number) => {
    const e = lo + Math.floor(r() * (hi - lo + 1));
    const mant = Math.floor(r() * 128);
    if (e < -126) return bf16ToNumber(mant >> (-126 - e)) || bf16ToNumber(1);
    return bf16ToNumber(((e + 127) << 7) | mant);
  };
  // Binary exponents of the statistics: from subnormal to the largest, with
  // u either side of the quantizer's fast-path limits (u normal, 1/u normal:
  // 2^-100 <= u <= 2^100). Those limits matter where the device flushes
  // subnormals (the H200 does); llvmpipe does not, so here the cases check the
  // codes at those scales, and the limits only on such a device.
  const scales = [-120, -40, -10, -3, 0, 20, -130, -96, -98, 60, 101, 103, 126];
  for (let b = 0; b < 4000; b++) {
    // Block statistics as the kernels store them: bf16 min <= 0 <= max
    // mostly, magnitudes from tiny to large.
    const scale = scales[b % scales.length];
    let mn = -bf16(scale - 6, scale);
    let mx = bf16(scale - 6, scale);
    if (b % 7 === 0) mn = 0;
    if (b % 11 === 0) mn = mx / 2; // both positive
    if (b % 13 === 0) mx = mn; // u = 0
    const u = fr(fr(mx - mn) / 15);
    // Residuals a few ulps around every boundary mn + (j + 0.5)·u, random
    // ones, the ends and zero (a kept entry).
    for (let j = 0; j < 15; j++) {
      const c = fr(mn + (j + 0.5) * u);
      for (let s = -4; s <= 4; s++) out.push({ r: nudge(c, s), mn, mx, scale });
    }
    for (let i = 0; i < 10; i++) {
      out.push({ r: fr(mn + r() * (mx - mn)), mn, mx, scale });
    }
    for (const x of [mn, mx, 0]) out.push({ r: x, mn, mx, scale });
  }
  return out;
}

// quantize (the multiplies, the fma decision near half codes, the division
// elsewhere), quantize_exact (the division alone), and the fma decision
// alone (exact for every r whose code is past the first,
// the division below that) give the reference's code.
for (const fn of ["quantize", "quantize_exact", "quantize_undecided"]) {
  Deno.test(`${fn} == the CPU reference's code near every rounding boundary, at every scale (subnormal and either side of the fast path's limits), u = 0 included`, async () => {
    await checkQuantizer(fn);
  });
}

async function checkQuantizer(fn: string): Promise<void> {
  const all = cases();
  const input = new Uint32Array(
    all.flatMap((c) => [bitsOf(c.r), bitsOf(c.mn), bitsOf(c.mx)]),
  );
  const module = device.createShaderModule({
    label: "ef_quant.wgsl test",
    code: [numeric, efQuant, harness(fn)].join("\n"),
  });
  const p = device.createComputePipeline({
    layout: "auto",
    compute: {
      module,
      entryPoint: "main",
      constants: { EXACT_FMA: hasExactFma(device) ? 1 : 0 },
    },
  });
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST |
    GPUBufferUsage.COPY_SRC;
  const inp = device.createBuffer({ size: input.byteLength, usage });
  const out = device.createBuffer({ size: 4 * all.length, usage });
  device.queue.writeBuffer(inp, 0, input);
  const groups = Math.ceil(all.length / WG);
  dispatchWith(
    device,
    p,
    [inp, out],
    Math.min(groups, 65535),
    Math.ceil(groups / 65535),
  );
  const got = new Uint32Array(await readBuffer(device, out));
  inp.destroy();
  out.destroy();
  let bad = 0;
  let first = "";
  const seen = new Set<number>();
  const badByScale = new Map<number, number>();
  // Where the device flushes subnormals, cases that compute with one are
  // counted apart and not required to match (README, "Numerics and exactness").
  const flushes = await flushesSubnormals();
  let flushed = 0;
  let flushedBad = 0;
  all.forEach((c, i) => {
    const want = cpuCode(c.r, c.mn, c.mx);
    seen.add(want);
    if (flushes && touchesSubnormals(c)) {
      flushed++;
      if (got[i] !== want) flushedBad++;
      return;
    }
    if (got[i] !== want) {
      badByScale.set(c.scale, (badByScale.get(c.scale) ?? 0) + 1);
      if (!bad++) {
        first = `r ${c.r}, mn ${c.mn}, mx ${c.mx}: got ${got[i]}, want ${want}`;
      }
    }
  });
  console.log(
    `${fn}: ${all.length - flushed} cases, ${bad} mismatches` +
      (flushes
        ? `; the device flushes subnormals: ${flushed} cases with a subnormal value not required to match (${flushedBad} differ)`
        : "; the device keeps subnormals: every case required to match"),
  );
  for (const [scale, n] of badByScale) {
    console.log(`${fn}: statistics near 2^${scale}: ${n} mismatches`);
  }
  assert.equal(bad, 0, `${bad} of ${all.length} differ; first: ${first}`);
  // Every code occurs, and the boundary cases really straddle boundaries.
  assert.equal(seen.size, 16);
}
