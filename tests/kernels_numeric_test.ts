/**
 * kernels/numeric.wgsl run on the GPU against the CPU reference numerics
 * (src/numeric/f32.ts, src/numeric/bf16.ts): the integer fma and division
 * that make the GPU's top-k selection round exactly like the CPU on every
 * device, bf16 rounding, pow_f32 and the order-preserving float code. Every
 * comparison is on bit patterns.
 *
 * Inputs stay inside each function's contract: finite normal operands and
 * normal (or zero) results for fma_short and div_rn, y with at most 8
 * significant bits for fma_short, quotients in [1e-37, 1e37] for div_rn
 * (outside that range div_rn_from returns its first guess unrefined,
 * although its comment promises every normal quotient), and divisors of at
 * most 2^126 where div_rn's first guess is WGSL's '/' (beyond that no error
 * bound holds: the H200 got all 105 such cases of the set wrong).
 */

import assert from "node:assert/strict";
import numeric from "../kernels/numeric.wgsl" with { type: "text" };
import { fmaF32, powF32 } from "../src/numeric/f32.ts";
import {
  bf16BitsDown,
  bf16BitsUp,
  bf16ToNumber,
  roundBf16,
} from "../src/numeric/bf16.ts";
import { bindBuffers, readBuffer } from "../src/gpu/buffers.ts";
import { rng, testDevice } from "./gpu_util.ts";

const device = await testDevice();

// ---- harness -------------------------------------------------------------

const WG = 64;

// Every entry point reads f32 bit patterns from `inp` and writes bit
// patterns to `out`; `i` is a flat invocation index.
const HARNESS = /* wgsl */ `
@group(0) @binding(0) var<storage, read> inp: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

fn arg(i: u32) -> f32 { return bitcast<f32>(inp[i]); }
fn flat(g: vec3<u32>) -> u32 { return g.x + g.y * ${WG}u * 65535u; }

// (x, y, z) -> fma_short, builtin fma (informational).
@compute @workgroup_size(${WG})
fn t_fma(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = flat(g);
  if (2u * i >= arrayLength(&out)) { return; }
  let x = arg(3u * i); let y = arg(3u * i + 1u); let z = arg(3u * i + 2u);
  out[2u * i] = bitcast<u32>(fma_short(x, y, z));
  out[2u * i + 1u] = bitcast<u32>(fma(x, y, z));
}

// (a, b) -> div_rn, plain '/' (informational).
@compute @workgroup_size(${WG})
fn t_div(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = flat(g);
  if (2u * i >= arrayLength(&out)) { return; }
  let a = arg(2u * i); let b = arg(2u * i + 1u);
  out[2u * i] = bitcast<u32>(div_rn(a, b));
  out[2u * i + 1u] = bitcast<u32>(a / b);
}

// (a, b, q0) -> div_rn_from.
@compute @workgroup_size(${WG})
fn t_div_from(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = flat(g);
  if (i >= arrayLength(&out)) { return; }
  out[i] = bitcast<u32>(div_rn_from(arg(3u * i), arg(3u * i + 1u), arg(3u * i + 2u)));
}

// x -> bf16_round, bf16_bits_down, bf16_bits_up, ordered_enc.
@compute @workgroup_size(${WG})
fn t_bits(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = flat(g);
  if (4u * i >= arrayLength(&out)) { return; }
  let x = arg(i);
  out[4u * i] = bitcast<u32>(bf16_round(x));
  out[4u * i + 1u] = bf16_bits_down(x);
  out[4u * i + 2u] = bf16_bits_up(x);
  out[4u * i + 3u] = ordered_enc(x);
}

// (one, x...) -> bf16_round_split(x, one), with one read at run time.
@compute @workgroup_size(${WG})
fn t_split(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = flat(g);
  if (i >= arrayLength(&out)) { return; }
  out[i] = bitcast<u32>(bf16_round_split(arg(i + 1u), arg(0u)));
}

// k -> ordered_dec.
@compute @workgroup_size(${WG})
fn t_dec(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = flat(g);
  if (i >= arrayLength(&out)) { return; }
  out[i] = bitcast<u32>(ordered_dec(inp[i]));
}

// (base, e as u32) -> pow_f32.
@compute @workgroup_size(${WG})
fn t_pow(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = flat(g);
  if (i >= arrayLength(&out)) { return; }
  out[i] = bitcast<u32>(pow_f32(arg(2u * i), inp[2u * i + 1u]));
}
`;

// The kernelSource() way: shared snippet, then the entry points.
const module = device.createShaderModule({
  label: "numeric.wgsl test",
  code: [numeric, HARNESS].join("\n"),
});
const pipelines = new Map<string, GPUComputePipeline>();

function pipelineFor(entry: string): GPUComputePipeline {
  let p = pipelines.get(entry);
  if (!p) {
    p = device.createComputePipeline({
      layout: "auto",
      compute: { module, entryPoint: entry },
    });
    pipelines.set(entry, p);
  }
  return p;
}

/** Runs `entry` over `input` words and returns `outWords` result words. */
async function run(
  entry: string,
  input: Uint32Array<ArrayBuffer>,
  outWords: number,
  perInvocation: number,
): Promise<Uint32Array> {
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST |
    GPUBufferUsage.COPY_SRC;
  const inp = device.createBuffer({ size: input.byteLength, usage });
  const out = device.createBuffer({ size: 4 * outWords, usage });
  try {
    device.queue.writeBuffer(inp, 0, input);
    device.pushErrorScope("validation");
    const p = pipelineFor(entry);
    const bind = bindBuffers(device, p.getBindGroupLayout(0), [inp, out]);
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(p);
    pass.setBindGroup(0, bind);
    const groups = Math.ceil(outWords / perInvocation / WG);
    const x = Math.min(groups, 65535);
    pass.dispatchWorkgroups(x, Math.ceil(groups / x));
    pass.end();
    device.queue.submit([enc.finish()]);
    const err = await device.popErrorScope();
    assert.equal(err, null, `validation error in ${entry}: ${err?.message}`);
    return new Uint32Array(await readBuffer(device, out));
  } finally {
    inp.destroy();
    out.destroy();
  }
}

// ---- bit helpers ------------------------------------------------------------

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
const hex = (b: number) => "0x" + (b >>> 0).toString(16).padStart(8, "0");
const show = (x: number) => `${x} (${hex(bitsOf(x))})`;
const MIN_NORMAL = 2 ** -126;
const isNormalOrZero = (x: number) =>
  Number.isFinite(x) && Math.fround(x) === x &&
  (x === 0 || Math.abs(x) >= MIN_NORMAL);

/** A normal f32 with a uniformly random mantissa, sign and exponent in [lo, hi]. */
function randomNormal(r: () => number, lo: number, hi: number): number {
  const e = lo + Math.floor(r() * (hi - lo + 1));
  const mant = Math.floor(r() * 0x800000);
  const sign = r() < 0.5 ? 0x80000000 : 0;
  return fromBits(sign | ((e + 127) << 23) | mant);
}

/** The f32 `steps` ulps further from zero than x (bit-pattern steps, same sign). */
const ulpStep = (x: number, steps: number) => fromBits(bitsOf(x) + steps);

const naiveFma = (x: number, y: number, z: number) =>
  Math.fround(Math.fround(x * y) + z);

// ---- fma_short ------------------------------------------------------------------

interface Triple {
  x: number;
  y: number;
  z: number;
  kind: string;
}

/** y values the kernels use: 4-bit codes and bf16 values (≤ 8 significant bits). */
function randomShortY(r: () => number): number {
  const u = r();
  if (u < 0.3) return Math.floor(r() * 16); // code 0..15
  if (u < 0.4) return -Math.floor(r() * 16);
  return roundBf16(randomNormal(r, -40, 40));
}

function randomTriples(r: () => number, n: number): Triple[] {
  const out: Triple[] = [];
  while (out.length < n) {
    const x = randomNormal(r, -60, 60);
    const y = randomShortY(r);
    const p = x * y; // exact in f64
    // z near the product's scale (alignment and cancellation), sometimes far
    // (the sticky shift past 64 bits), sometimes zero.
    const u = r();
    let z: number;
    if (u < 0.02) z = r() < 0.5 ? 0 : -0;
    else if (p === 0 || u < 0.1) z = randomNormal(r, -100, 100);
    else {
      const e = Math.floor(Math.log2(Math.abs(p)));
      const spread = u < 0.6 ? 3 : u < 0.9 ? 30 : 80;
      const ez = Math.max(
        -126,
        Math.min(127, e + Math.round((2 * r() - 1) * spread)),
      );
      z = randomNormal(r, ez, ez);
    }
    const want = fmaF32(x, y, z);
    if (!isNormalOrZero(want)) continue; // outside the contract
    out.push({ x, y, z, kind: "random" });
  }
  return out;
}

/**
 * Exact ties where rounding the product first picks the other neighbour:
 * P = x·y has 25 significant bits (odd last bit) and z = −(2j+1)·ulp(P), so
 * P + z is a midpoint of the result's f32 grid whose even neighbour is on the
 * other side from P's own even neighbour.
 */
function midpointTies(r: () => number, n: number): Triple[] {
  const out: Triple[] = [];
  while (out.length < n) {
    const yInt = 3 + 2 * Math.floor(r() * 127); // odd, 3..255 (≤ 8 bits)
    // m odd with yInt·m in [2^24, 2^25): P has exactly 25 bits.
    const lo = Math.ceil(2 ** 24 / yInt);
    const hi = Math.floor((2 ** 25 - 1) / yInt);
    let m = lo + Math.floor(r() * (hi - lo + 1));
    if (m % 2 === 0) m += m + 1 <= hi ? 1 : -1;
    if (m >= 2 ** 24 || yInt * m < 2 ** 24) continue;
    const ex = Math.floor(r() * 60) - 30;
    const ey = Math.floor(r() * 20) - 10;
    const sx = r() < 0.5 ? -1 : 1;
    const sy = r() < 0.5 ? -1 : 1;
    const x = sx * m * 2 ** ex;
    const y = sy * yInt * 2 ** ey;
    const unit = 2 ** (ex + ey); // P's last bit
    const p = x * y;
    // Stay in P's binade: |P + z| keeps 25 bits.
    const j = Math.floor(r() * 1000);
    const z = (r() < 0.5 ? -1 : 1) * (2 * j + 1) * 2 * unit;
    const s = p + z;
    if (Math.abs(s) < 2 ** 24 * unit || Math.abs(s) >= 2 ** 25 * unit) continue;
    out.push({ x, y, z, kind: "tie" });
  }
  return out;
}

/**
 * A product exactly on a midpoint (25 significant bits) plus a z so small it
 * is shifted out of the 64-bit frame entirely: only the sticky bit remembers
 * it, and it decides the rounding (rounding the product first gets the
 * half where z points the other way than the even neighbour wrong).
 */
function stickyTies(r: () => number, n: number): Triple[] {
  return midpointTies(r, n).map(({ x, y }) => {
    const p = x * y;
    const e = Math.floor(Math.log2(Math.abs(p))) - 40 - Math.floor(r() * 60);
    const z = randomNormal(r, Math.max(e, -126), Math.max(e, -126));
    return { x, y, z, kind: "tie+tiny" };
  });
}

/** Exact cancellation, error-free product residues, carries into the next binade. */
function structuredTriples(r: () => number): Triple[] {
  const out: Triple[] = [];
  const push = (x: number, y: number, z: number, kind: string) =>
    out.push({ x: Math.fround(x), y, z: Math.fround(z), kind });
  for (let i = 0; i < 500; i++) {
    // x with 16 significant bits: x·y is an exact f32, z = −x·y cancels to +0.
    const x16 = (32768 + Math.floor(r() * 32768)) *
      2 ** (Math.floor(r() * 60) - 45) *
      (r() < 0.5 ? -1 : 1);
    const y = randomShortY(r) || 7;
    push(x16, y, -(x16 * y), "cancel");
    // Full x: z = −fround(x·y) leaves the product's rounding error, exactly.
    const x = randomNormal(r, -40, 40);
    push(x, y, -Math.fround(x * y), "residue");
  }
  for (let k = -120; k <= 126; k += 7) {
    const pk = 2 ** k;
    const below = fromBits(bitsOf(pk) - 1); // largest f32 below 2^k
    const ulpBelow = pk - below;
    for (let i = 0; i < 6; i++) {
      const y = [1, 3, 5, 15, 0.5, 2][i];
      // Product ≈ half an ulp of `below` ± a little: rounds up into 2^k or stays.
      const x1 = Math.fround(ulpBelow / 2 / y * (1 + (i - 2.5) * 2 ** -20));
      push(x1, y, below, "carry");
      push(-x1, y, pk, "borrow"); // 2^k − small: the ulp halves below 2^k
      push(x1, -y, -below, "carry-neg");
      // Exactly half an ulp of `below` (a tie that rounds up to 2^k, even).
      push(ulpBelow / 2, 1, below, "carry-tie");
      push(-ulpBelow / 2, 1, pk, "borrow-tie");
    }
  }
  // Zeros and signed zeros.
  for (const x of [0, -0, 1.5, -2.25]) {
    for (const y of [0, -0, 3, -0.5]) {
      for (const z of [0, -0, 1, -7.75]) push(x, y, z, "zeros");
    }
  }
  // Tiny results just above the normal range, and huge ones.
  for (let i = 0; i < 300; i++) {
    const y = r() < 0.5 ? 1 + Math.floor(r() * 15) : roundBf16(0.5 + 4 * r());
    const target = randomNormal(r, -126, -110);
    const x = Math.fround(target / y);
    push(x, y, randomNormal(r, -126, -118), "tiny");
    push(x, y, 0, "tiny-z0");
    const big = randomNormal(r, 110, 126);
    push(
      Math.fround(big / Math.abs(y || 1)),
      y,
      randomNormal(r, 100, 126),
      "large",
    );
  }
  return out.filter((t) =>
    Number.isFinite(t.x) && isNormalOrZero(t.x) && isNormalOrZero(t.z) &&
    isNormalOrZero(fmaF32(t.x, t.y, t.z))
  );
}

async function checkFma(cases: Triple[], label: string) {
  const input = new Uint32Array(3 * cases.length);
  cases.forEach((c, i) => {
    input[3 * i] = bitsOf(c.x);
    input[3 * i + 1] = bitsOf(c.y);
    input[3 * i + 2] = bitsOf(c.z);
  });
  const out = await run("t_fma", input, 2 * cases.length, 2);
  let bad = 0;
  let naiveDiffers = 0;
  let builtinDiffers = 0;
  let first = "";
  const byKind = new Map<string, number>();
  cases.forEach((c, i) => {
    const want = bitsOf(fmaF32(c.x, c.y, c.z));
    if (out[2 * i] !== want) {
      if (!bad++) {
        first = `fma_short(${show(c.x)}, ${show(c.y)}, ${
          show(c.z)
        }) [${c.kind}] = ${hex(out[2 * i])}, fmaF32 = ${hex(want)}`;
      }
    }
    if (bitsOf(naiveFma(c.x, c.y, c.z)) !== want) naiveDiffers++;
    if (out[2 * i + 1] !== want) builtinDiffers++;
    byKind.set(c.kind, (byKind.get(c.kind) ?? 0) + 1);
  });
  console.log(
    `${label}: ${cases.length} triples ${
      JSON.stringify(Object.fromEntries(byKind))
    }, ${bad} mismatches; naive f32 rounding differs on ${naiveDiffers}, WGSL fma() on ${builtinDiffers}`,
  );
  assert.equal(bad, 0, `${bad} of ${cases.length} differ; first: ${first}`);
  return { naiveDiffers };
}

Deno.test("fma_short == fmaF32 on 100k random triples (y: codes 0..15 and bf16 values)", async () => {
  const seed = 0x5eed_fa;
  await checkFma(randomTriples(rng(seed), 100_000), `random (seed ${seed})`);
});

Deno.test("fma_short == fmaF32 on constructed midpoint ties (rounding the product first is wrong), and ties decided by a tiny z", async () => {
  const ties = midpointTies(rng(7), 5000);
  // The construction: every case is an exact tie at the result's precision,
  // and the naive two-rounding form gets every one wrong.
  for (const t of ties) {
    const s = t.x * t.y + t.z; // exact in f64 (≤ 26 bits)
    const lo = Math.fround(s);
    assert.notEqual(lo, s, "not representable");
    const other = fromBits(bitsOf(lo) + (Math.abs(s) > Math.abs(lo) ? 1 : -1));
    assert.equal((lo + other) / 2, s, `${s} is not a midpoint`);
  }
  const { naiveDiffers } = await checkFma(ties, "midpoint ties");
  assert.equal(naiveDiffers, ties.length, "naive must be wrong on every tie");
  // The same products plus a z below the 64-bit frame (the sticky bit).
  const sticky = stickyTies(rng(8), 5000);
  const st = await checkFma(sticky, "ties + tiny z");
  assert.ok(st.naiveDiffers > 1500, `naive differs on ${st.naiveDiffers}`);
});

Deno.test("fma_short == fmaF32 on cancellation, binade carries and borrows, signed zeros, tiny and huge results", async () => {
  const cases = structuredTriples(rng(11));
  const { naiveDiffers } = await checkFma(cases, "structured");
  // The residue cases alone make the naive form wrong (it gives 0 there).
  assert.ok(naiveDiffers >= 400, `naive differs on only ${naiveDiffers}`);
  // Spot checks with closed forms.
  const spot: [number, number, number, number][] = [
    // (1 + 2^-23)·3 − 3 = 3·2^-23 exactly (the naive form gives 4·2^-23).
    [1 + 2 ** -23, 3, -3, 3 * 2 ** -23],
    // 2^-24 above 1 is a tie to 1 (even); 2^-24 + 2^-47 goes up.
    [2 ** -24, 1, 1, 1],
    [(1 + 2 ** -23) * 2 ** -24, 1, 1, 1 + 2 ** -23],
    // Exact cancellation gives +0 (round to nearest).
    [1.5, -2, 3, 0],
    [-0, 5, -0, -0],
    [0, -5, -0, -0],
    [0, 5, -0, 0],
  ];
  const got = await run(
    "t_fma",
    new Uint32Array(spot.flatMap(([x, y, z]) => [x, y, z].map(bitsOf))),
    2 * spot.length,
    2,
  );
  spot.forEach(([x, y, z, want], i) => {
    assert.equal(
      bitsOf(fmaF32(x, y, z)),
      bitsOf(want),
      `fmaF32(${x}, ${y}, ${z})`,
    );
    assert.equal(
      hex(got[2 * i]),
      hex(bitsOf(want)),
      `fma_short(${x}, ${y}, ${z})`,
    );
  });
});

// ---- div_rn -----------------------------------------------------------------------

interface DivCase {
  a: number;
  b: number;
  kind: string;
}

/** B⁻¹ mod 2^25 for odd B (Newton's iteration doubles the correct bits). */
function invMod2to25(b: number): bigint {
  const B = BigInt(b);
  let x = B; // correct to 3 bits for odd B
  for (let i = 0; i < 4; i++) x = BigInt.asUintN(25, x * (2n - B * x));
  return x;
}

/** |a/b − nearest midpoint| in ulps of the rounded quotient. */
function ulpsFromMidpoint(a: number, b: number): number {
  const q = Math.fround(a / b);
  const ulp = Math.abs(ulpStep(q, 1) - q);
  // Exact residual a − q·b in f64 (q·b has ≤ 48 bits), so no cancellation error.
  const rest = (a - q * b) / b;
  return Math.abs(Math.abs(rest) - ulp / 2) / ulp;
}

const divOk = (a: number, b: number) => {
  const q = Math.fround(a / b);
  return isNormalOrZero(a) && isNormalOrZero(b) && b !== 0 &&
    Number.isFinite(q) &&
    (a === 0 || (Math.abs(q) >= 1e-37 && Math.abs(q) <= 1e37));
};

function divCases(r: () => number): DivCase[] {
  const out: DivCase[] = [];
  const push = (a: number, b: number, kind: string) => {
    a = Math.fround(a);
    b = Math.fround(b);
    if (divOk(a, b)) out.push({ a, b, kind });
  };
  for (let i = 0; i < 40_000; i++) {
    push(randomNormal(r, -60, 60), randomNormal(r, -60, 60), "random");
  }
  // Operands anywhere in the normal range: the refinement runs on them with
  // their exponent fields set to 0 and puts the quotient's exponent back (a
  // device that flushes subnormals rounded quotients near 2^-107 wrongly
  // without that; llvmpipe does not flush, so here these check the scaling).
  for (let i = 0; i < 20_000; i++) {
    push(randomNormal(r, -126, 127), randomNormal(r, -126, 127), "full range");
  }
  // b = 15: the EF quantization unit (max - min) / 15, also for tiny blocks.
  for (let i = 0; i < 10_000; i++) push(randomNormal(r, -40, 40), 15, "b=15");
  for (let i = 0; i < 5_000; i++) {
    push(randomNormal(r, -120, -90), 15, "b=15 tiny");
  }
  for (let k = 1; k <= 2000; k++) push(k * 2 ** -10, 15, "b=15 grid");
  // Near-ties. An exact tie is impossible (a midpoint M has 25 significant
  // bits with an odd last one, so M·b is never an f32), but with B odd and
  // N = δ·B⁻¹ mod 2^25 odd in [2^24, 2^25), N·B = A·2^25 + δ, so
  // A/B = N/2^25 − δ/(2^25·B): within |δ|/2B ulps (about 2^-24) of the
  // midpoint N/2^25.
  for (let i = 0; i < 10_000; i++) {
    const B = 0x800001 + 2 * Math.floor(r() * 0x3fffff); // odd 24-bit
    const delta = (1 + 2 * Math.floor(r() * 8)) * (r() < 0.5 ? -1 : 1);
    const n = Number(BigInt.asUintN(25, BigInt(delta) * invMod2to25(B)));
    if (n < 2 ** 24) continue;
    const A = (n * B - delta) / 2 ** 25; // exact: n·B < 2^50
    if (!Number.isInteger(A) || A >= 2 ** 24) continue;
    const sa = r() < 0.5 ? -1 : 1;
    const sb = r() < 0.5 ? -1 : 1;
    // Exponents out to the ends of the normal range (push drops the cases
    // that leave it).
    const ea = Math.floor(r() * 250) - 126;
    const eb = Math.floor(r() * 250) - 126;
    push(sa * A * 2 ** ea, sb * B * 2 ** eb, "near-tie");
  }
  // b = 15: a/15 in units of the quotient's ulp has a fraction k/15, so the
  // closest a quotient gets to a midpoint is 1/30 ulp (k = 7 or 8).
  for (let i = 0; i < 10_000; i++) {
    const q = randomNormal(r, -20, 20);
    push((q + ulpStep(q, 1)) / 2 * 15, 15, "b=15 near-tie");
  }
  // Quotients next to powers of two (the ulp changes there).
  for (let k = -100; k <= 100; k += 3) {
    for (let d = -3; d <= 3; d++) {
      for (let j = 0; j < 4; j++) {
        const b = j === 0 ? 15 : randomNormal(r, -10, 10);
        const q = fromBits(bitsOf(2 ** k) + d);
        push(q * b, b, "power of two");
      }
    }
  }
  for (const a of [0, -0]) for (const b of [3, -3, 15]) push(a, b, "zero");
  return out;
}

Deno.test("div_rn == Math.fround(a / b): random, b = 15, near-ties, quotients next to powers of two, zeros", async () => {
  // '/' supplies div_rn's first guess: divisors within WGSL's bound for it.
  const all = divCases(rng(3));
  const cases = all.filter((c) => Math.abs(c.b) <= 2 ** 126);
  assert.ok(all.length - cases.length < 200, "few divisors above 2^126");
  const input = new Uint32Array(
    cases.flatMap((c) => [bitsOf(c.a), bitsOf(c.b)]),
  );
  const out = await run("t_div", input, 2 * cases.length, 2);
  let bad = 0;
  let slashDiffers = 0;
  let first = "";
  cases.forEach((c, i) => {
    const want = bitsOf(Math.fround(c.a / c.b));
    if (out[2 * i] !== want && !bad++) {
      first = `div_rn(${show(c.a)}, ${show(c.b)}) [${c.kind}] = ${
        hex(out[2 * i])
      }, want ${hex(want)}`;
    }
    if (out[2 * i + 1] !== want) slashDiffers++;
  });
  console.log(
    `div_rn: ${cases.length} cases, ${bad} mismatches; WGSL '/' differs on ${slashDiffers}`,
  );
  assert.equal(bad, 0, `${bad} of ${cases.length} differ; first: ${first}`);
  // The near-tie constructions are what they say.
  let near = 0;
  let worst = 0;
  let closest15 = 1;
  for (const c of cases) {
    if (c.kind === "near-tie") {
      near++;
      worst = Math.max(worst, ulpsFromMidpoint(c.a, c.b));
    } else if (c.kind === "b=15 near-tie") {
      closest15 = Math.min(closest15, ulpsFromMidpoint(c.a, c.b));
    }
  }
  console.log(
    `near-ties: ${near}, farthest ${
      worst.toExponential(2)
    } ulp from a midpoint; b = 15 closest ${closest15.toFixed(4)} ulp`,
  );
  assert.ok(near > 3000 && worst < 2 ** -20, `near-ties: ${near}, ${worst}`);
  assert.ok(Math.abs(closest15 - 1 / 30) < 1e-6, `b = 15: ${closest15}`);
});

Deno.test("div_rn_from corrects first guesses off by -3..+3 ulps", async () => {
  const r = rng(5);
  const base = divCases(r).filter((c) => c.a !== 0 && r() < 0.25);
  const rows: { a: number; b: number; q0: number; want: number }[] = [];
  for (const c of base) {
    const want = Math.fround(c.a / c.b);
    for (let d = -3; d <= 3; d++) {
      const q0 = ulpStep(want, d);
      // q0 must stay a positive-magnitude guess of the same sign.
      if (Math.sign(q0) !== Math.sign(want) || !Number.isFinite(q0)) continue;
      rows.push({ a: c.a, b: c.b, q0, want });
    }
  }
  const input = new Uint32Array(
    rows.flatMap((x) => [x.a, x.b, x.q0].map(bitsOf)),
  );
  const out = await run("t_div_from", input, rows.length, 1);
  let bad = 0;
  let first = "";
  rows.forEach((x, i) => {
    if (out[i] !== bitsOf(x.want) && !bad++) {
      first = `div_rn_from(${show(x.a)}, ${show(x.b)}, ${show(x.q0)}) = ${
        hex(out[i])
      }, want ${hex(bitsOf(x.want))}`;
    }
  });
  console.log(
    `div_rn_from: ${rows.length} perturbed guesses, ${bad} mismatches`,
  );
  assert.equal(bad, 0, `${bad} of ${rows.length} differ; first: ${first}`);
});

// ---- bf16, ordered codes -------------------------------------------------

/** Random f32 bit patterns of every class plus the edges. */
function bitPatterns(
  r: () => number,
  n: number,
): Uint32Array<ArrayBuffer> {
  const list: number[] = [
    0,
    0x80000000,
    0x7f800000,
    0xff800000, // ±0, ±Inf
    0x7fc00000,
    0xffc00000,
    0x7f800001,
    0x7fbfffff,
    0xff800001, // NaNs
    0x00000001,
    0x807fffff,
    0x00800000,
    0x80800000, // subnormal / min normal
    0x7f7fffff,
    0xff7fffff,
    0x7f7f7fff,
    0x7f7f8000,
    0x7f7f8001,
    0x7f7effff,
    0x7f7e8000,
    0x3f808000,
    0x3f818000,
    0xbf808000,
    0xbf818000,
    0x3f807fff,
    0x3f808001,
    0x3f800000,
    0x3f80ffff,
    0xbf80ffff,
    0x0000ffff,
    0x8000ffff,
  ];
  while (list.length < n) {
    const u = r();
    let b = Math.floor(r() * 2 ** 32);
    // Bias some toward ties (low half 0x8000) and exact bf16 values.
    if (u < 0.15) b = (b & 0xffff0000) | 0x8000;
    else if (u < 0.25) b = b & 0xffff0000;
    else if (u < 0.3) b = (b & 0xffff0000) | 0x7fff;
    list.push(b >>> 0);
  }
  return new Uint32Array(list);
}

const orderedEnc = (b: number) => (b >>> 31 ? ~b : b | 0x80000000) >>> 0;
const orderedDec = (k: number) => (k >>> 31 ? k & 0x7fffffff : ~k) >>> 0;
const isNaNBits = (b: number) => (b & 0x7fffffff) > 0x7f800000;

Deno.test("bf16_round, bf16_bits_down/up and ordered_enc == CPU on 100k bit patterns (ties, NaN, ±Inf, overflow)", async () => {
  const bits = bitPatterns(rng(9), 100_000);
  const out = await run("t_bits", bits, 4 * bits.length, 4);
  const bad = [0, 0, 0, 0];
  const first: string[] = ["", "", "", ""];
  let ties = 0;
  let nans = 0;
  let overflow = 0;
  const note = (k: number, msg: string) => {
    if (!bad[k]++) first[k] = msg;
  };
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    const x = fromBits(b);
    const [round, down, up, enc] = out.subarray(4 * i, 4 * i + 4);
    if (isNaNBits(b)) {
      nans++;
      // NaN stays NaN of the same sign.
      if (!isNaNBits(round) || (round >>> 31) !== (b >>> 31)) {
        note(0, `bf16_round(${hex(b)}) = ${hex(round)}, want a NaN`);
      }
    } else {
      if ((b & 0xffff) === 0x8000) ties++;
      const want = bitsOf(roundBf16(x));
      if (want === 0x7f800000 || want === 0xff800000) {
        if ((b & 0x7fffffff) !== 0x7f800000) overflow++;
      }
      if (round !== want) {
        note(0, `bf16_round(${hex(b)}) = ${hex(round)}, want ${hex(want)}`);
      }
    }
    if (down !== bf16BitsDown(x) && !isNaNBits(b)) {
      note(
        1,
        `bf16_bits_down(${hex(b)}) = ${hex(down)}, want ${
          hex(bf16BitsDown(x))
        }`,
      );
    }
    if (up !== bf16BitsUp(x) && !isNaNBits(b)) {
      note(
        2,
        `bf16_bits_up(${hex(b)}) = ${hex(up)}, want ${hex(bf16BitsUp(x))}`,
      );
    }
    if (!isNaNBits(b)) {
      // The bracket property itself (the reason these exist).
      if (!(bf16ToNumber(down) <= x && bf16ToNumber(up) >= x)) {
        note(1, `bf16 bracket of ${hex(b)}: ${hex(down)}..${hex(up)}`);
      }
      if (enc !== orderedEnc(b)) {
        note(
          3,
          `ordered_enc(${hex(b)}) = ${hex(enc)}, want ${hex(orderedEnc(b))}`,
        );
      }
    }
  }
  console.log(
    `bf16/ordered: ${bits.length} patterns (${ties} ties, ${nans} NaN, ${overflow} overflowing to Inf); mismatches round/down/up/enc = ${bad}`,
  );
  assert.ok(
    ties > 1000 && nans > 10 && overflow >= 3,
    "the generator must cover the edges",
  );
  assert.deepEqual(bad, [0, 0, 0, 0], first.filter(Boolean).join("; "));
  // Closed forms of the tie rule and overflow.
  const spot = new Uint32Array([
    0x3f808000,
    0x3f818000,
    0xbf818000,
    0x7f7f8000,
    0x7f7fffff,
    0xff7f8000,
  ]);
  const got = await run("t_bits", spot, 4 * spot.length, 4);
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5].map((i) => hex(got[4 * i])),
    [0x3f800000, 0x3f820000, 0xbf820000, 0x7f800000, 0x7f800000, 0xff800000]
      .map(hex),
  );
});

Deno.test("bf16_round_split == bf16 rounding by bits on its domain: normal |x| < 2^100, ±0, subnormal bf16 values", async () => {
  // Where the split is exact (an exhaustive check over every f32 found no
  // other mismatch): what MicroAdam's bf16 a = g + e can be.
  const inDomain = (b: number) => {
    const e = (b >>> 23) & 0xff;
    return e === 0 ? (b & 0xffff) === 0 : e < 127 + 100;
  };
  const bits = [
    0x717fffff, // just below 2^100: rounds up to it
    0xf17f8000, // a tie just below -2^100
    0x00800000,
    0x00808000,
    0x80818000, // ties at the smallest normals
    0x00010000,
    0x807f0000, // subnormal bf16 values
    ...bitPatterns(rng(10), 60_000),
  ].filter(inDomain);
  const input = new Uint32Array([bitsOf(1), ...bits]);
  const out = await run("t_split", input, bits.length, 1);
  let ties = 0;
  const bad: string[] = [];
  bits.forEach((b, i) => {
    if ((b & 0xffff) === 0x8000) ties++;
    const want = bitsOf(roundBf16(fromBits(b)));
    if (out[i] !== want && bad.length < 5) {
      bad.push(`split(${hex(b)}) = ${hex(out[i])}, want ${hex(want)}`);
    }
  });
  assert.ok(ties > 1000, "the generator must cover ties");
  assert.deepEqual(bad, []);
  // Just past the domain's top, the split overflows: why a must stay below.
  const top = await run(
    "t_split",
    new Uint32Array([bitsOf(1), 0x7f7f0000]),
    1,
    1,
  );
  assert.notEqual(top[0], 0x7f7f0000);
});

Deno.test("ordered_enc is strictly increasing on sorted floats (incl. -0 < +0, ±Inf, subnormals), never 0, and ordered_dec inverts it", async () => {
  const r = rng(13);
  const values: number[] = [
    0,
    -0,
    Infinity,
    -Infinity,
    3.4028234663852886e38,
    -3.4028234663852886e38,
    1e-45,
    -1e-45,
    MIN_NORMAL,
    -MIN_NORMAL,
  ];
  for (let i = 0; i < 50_000; i++) {
    let b = Math.floor(r() * 2 ** 32) >>> 0;
    if (isNaNBits(b)) b &= 0xff7fffff;
    values.push(fromBits(b));
  }
  // Distinct bit patterns sorted by value, -0 before +0.
  const key = (x: number) => (Object.is(x, -0) ? -Number.MIN_VALUE : x);
  const bits = [...new Set(values.map(bitsOf))];
  bits.sort((p, q) => {
    const [kp, kq] = [key(fromBits(p)), key(fromBits(q))];
    return kp < kq ? -1 : kp > kq ? 1 : 0;
  });
  const input = new Uint32Array(bits);
  const out = await run("t_bits", input, 4 * input.length, 4);
  const enc = new Uint32Array(input.length);
  for (let i = 0; i < input.length; i++) enc[i] = out[4 * i + 3];
  let violations = 0;
  for (let i = 0; i < enc.length; i++) {
    assert.notEqual(enc[i], 0, `ordered_enc(${hex(input[i])}) is 0`);
    assert.equal(enc[i], orderedEnc(input[i]));
    if (i > 0 && !(enc[i] > enc[i - 1])) violations++;
  }
  assert.equal(violations, 0, `${violations} order violations`);
  const dec = await run("t_dec", enc, enc.length, 1);
  let roundTrip = 0;
  for (let i = 0; i < enc.length; i++) {
    if (dec[i] === input[i]) roundTrip++;
    assert.equal(orderedDec(enc[i]), input[i]);
  }
  console.log(
    `ordered: ${enc.length} sorted values, ${violations} order violations, ${roundTrip} exact round trips`,
  );
  assert.equal(roundTrip, enc.length);
  // -0 encodes just below +0, and the zeroed buffer (0) sits below everything.
  const z = await run("t_bits", new Uint32Array([0x80000000, 0]), 8, 4);
  assert.equal(z[7] - z[3], 1);
});

// ---- pow_f32 --------------------------------------------------------------------------

Deno.test("pow_f32 == powF32 (betas, random bases, exponents 0..2^31)", async () => {
  const r = rng(17);
  const rows: { base: number; e: number }[] = [];
  const bases = [0.9, 0.999, 0.99, 0.95, 0.5, 0.75, 1, 1.5, -0.9, 0, 2];
  for (const base of bases) {
    for (const e of [0, 1, 2, 3, 7, 8, 100, 1000, 10_000, 65_535]) {
      rows.push({ base, e });
    }
  }
  for (let i = 0; i < 20_000; i++) {
    const base = r() < 0.5
      ? Math.fround(1 - 10 ** (-1 - 3 * r()))
      : randomNormal(r, -3, 1);
    const e = r() < 0.7 ? Math.floor(r() * 200) : Math.floor(r() * 2 ** 31);
    rows.push({ base: Math.fround(base), e });
  }
  // Keep cases whose intermediates stay normal (or 0/Inf): llvmpipe may flush
  // subnormals, which is no difference the kernels can see (1 − β^t).
  const ok = (v: number) =>
    v === 0 || !Number.isFinite(v) || Math.abs(v) >= MIN_NORMAL;
  const normalIntermediates = (base: number, e: number) => {
    let res = 1;
    let b = Math.fround(base);
    let k = e;
    while (k > 0) {
      if (k & 1) {
        res = Math.fround(res * b);
        k -= 1;
        if (!ok(res)) return false;
      }
      b = Math.fround(b * b);
      if (!ok(b)) return false;
      k = Math.floor(k / 2);
    }
    return true;
  };
  const kept = rows.filter(({ base, e }) => normalIntermediates(base, e));
  const dropped = rows.length - kept.length;
  const input = new Uint32Array(
    kept.flatMap(({ base, e }) => [bitsOf(base), e]),
  );
  const out = await run("t_pow", input, kept.length, 1);
  let bad = 0;
  let first = "";
  kept.forEach(({ base, e }, i) => {
    const want = bitsOf(powF32(base, e));
    if (out[i] !== want && !bad++) {
      first = `pow_f32(${show(base)}, ${e}) = ${hex(out[i])}, want ${
        hex(want)
      }`;
    }
  });
  console.log(
    `pow_f32: ${kept.length} cases (${dropped} with subnormal intermediates left out), ${bad} mismatches`,
  );
  assert.equal(bad, 0, first);
  assert.equal(out[0], bitsOf(1)); // 0.9^0
  assert.equal(fromBits(out[1]), Math.fround(0.9)); // 0.9^1
});
