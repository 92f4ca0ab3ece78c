/**
 * kernels/workgroup.wgsl and kernels/workgroup_subgroups.wgsl run on the GPU
 * against closed forms on the CPU: the workgroup sums, maxima, scan and
 * prefix, and the subgroup lower bound on the k-th largest value that the
 * select kernel filters its candidates with (wg_kth_bound_part: per subgroup
 * the c-th largest, c = ceil(k / subgroups), its lane-index bits cleared,
 * then the workgroup's minimum),
 * and the one-barrier forms of the scan and the maximum (wg_scan_varying,
 * wg_max2_varying, and wg_max2_first, whose result only the first thread
 * must hold).
 */

import assert from "node:assert/strict";
import workgroup from "../kernels/workgroup.wgsl" with { type: "text" };
import workgroupSubgroups from "../kernels/workgroup_subgroups.wgsl" with {
  type: "text",
};
import { hasSubgroups } from "../src/gpu/capabilities.ts";
import { readBuffer } from "../src/gpu/buffers.ts";
import {
  bufferFrom,
  dispatchWith,
  rng,
  TENSOR_USAGE,
  testDevice,
} from "./gpu_util.ts";

const device = await testDevice();
const WG = 256;

// One workgroup per case: x = inp[256·case + tid], k = ks[case]. Per thread
// out gets the exclusive scan and its total, the sum, the maximum, the bound
// part, the subgroup size (0 without subgroups), the prefix alone, then the
// one-barrier scan and total and maximum, and the first thread's maximum
// (a barrier before each, as their contract asks).
const HARNESS = /* wgsl */ `
@group(0) @binding(0) var<storage, read> inp: array<u32>;
@group(0) @binding(1) var<storage, read> ks: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  wg_init(tid);
  let x = inp[256u * wid.x + tid];
  let o = OUTS * (256u * wid.x + tid);
  let scan = wg_scan(tid, x & 0xffffu);
  out[o] = scan.x;
  out[o + 1u] = scan.y;
  out[o + 2u] = wg_sum4(tid, vec4<u32>(x & 0xffu, 1u, 2u, 3u)).x;
  out[o + 3u] = wg_max4(tid, vec4<u32>(x, 0u, 0u, 0u)).x;
  out[o + 4u] = wg_kth_bound_part(tid, x, ks[wid.x]);
  out[o + 5u] = SUBGROUP_SIZE;
  out[o + 6u] = wg_prefix(tid, (x >> 8u) & 0xffu);
  workgroupBarrier();
  let scan2 = wg_scan_varying(tid, (x >> 4u) & 0xffffu);
  out[o + 7u] = scan2.x;
  out[o + 8u] = scan2.y;
  workgroupBarrier();
  out[o + 9u] = wg_max2_varying(tid, vec2<u32>(0u, x ^ 0x55u)).y;
  workgroupBarrier();
  out[o + 10u] = wg_max2_first(tid, vec2<u32>(x ^ 0xa0u, 0u)).x;
}`;

/** Words of `out` per thread. */
const OUTS = 11;

/** Runs the harness over `cases` workgroups of x, with k per case. */
async function run(
  subgroups: boolean,
  x: Uint32Array,
  ks: Uint32Array,
): Promise<Uint32Array> {
  const code = (subgroups ? workgroupSubgroups : workgroup) +
    HARNESS.replace(
      "SUBGROUP_SIZE",
      subgroups ? "subgroupAdd(1u)" : "0u",
    ).replace("OUTS", `${OUTS}u`);
  const module = device.createShaderModule({ code });
  const pipeline = device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const inp = bufferFrom(device, x);
  const kb = bufferFrom(device, ks);
  const out = device.createBuffer({
    size: OUTS * x.byteLength,
    usage: TENSOR_USAGE,
  });
  dispatchWith(device, pipeline, [inp, kb, out], ks.length);
  const got = new Uint32Array(await readBuffer(device, out));
  for (const b of [inp, kb, out]) b.destroy();
  return got;
}

/** Cases: random keys, keys with many ties, sorted runs, all equal; k from 1 to 256. */
function cases(): { x: Uint32Array; ks: Uint32Array } {
  const r = rng(7);
  const kinds = 6;
  const kList = [1, 2, 7, 8, 9, 31, 41, 64, 100, 255, 256];
  const n = kinds * kList.length;
  const x = new Uint32Array(WG * n);
  const ks = new Uint32Array(n);
  let c = 0;
  for (let kind = 0; kind < kinds; kind++) {
    for (const k of kList) {
      for (let t = 0; t < WG; t++) {
        const u = Math.floor(r() * 2 ** 31);
        x[WG * c + t] = kind === 0 ? u : kind === 1
          ? u % 5 // bulk ties
          : kind === 2
          ? t // ascending
          : kind === 3
          ? WG - t // descending
          : kind === 4
          ? 12345 // all equal
          : (u % 3 === 0 ? 0x7f800000 : u % 1000); // a few large, many small
      }
      ks[c++] = k;
    }
  }
  return { x, ks };
}

for (const subgroups of [false, true]) {
  Deno.test(`workgroup reductions (${subgroups ? "subgroups" : "workgroup memory only"}): scan, sum, maximum and the k-th largest bound against closed forms`, async () => {
    if (subgroups && !hasSubgroups(device)) {
      throw new Error("the test device has no usable subgroups");
    }
    const { x, ks } = cases();
    const got = await run(subgroups, x, ks);
    let boundsChecked = 0;
    for (let c = 0; c < ks.length; c++) {
      const xs = Array.from(x.subarray(WG * c, WG * (c + 1)));
      const k = ks[c];
      let prefix = 0;
      let prefix2 = 0;
      let prefix3 = 0;
      const total = xs.reduce((s, v) => s + (v & 0xffff), 0);
      const total3 = xs.reduce((s, v) => s + ((v >>> 4) & 0xffff), 0);
      const max3 = Math.max(...xs.map((v) => (v ^ 0x55) >>> 0));
      const max4 = Math.max(...xs.map((v) => (v ^ 0xa0) >>> 0));
      const sum = xs.reduce((s, v) => s + (v & 0xff), 0);
      const max = Math.max(...xs);
      let bound = Infinity;
      for (let t = 0; t < WG; t++) {
        const o = OUTS * (WG * c + t);
        assert.equal(got[o], prefix, `case ${c} thread ${t}: scan`);
        assert.equal(got[o + 1], total, `case ${c}: scan total`);
        assert.equal(got[o + 2], sum, `case ${c}: sum`);
        assert.equal(got[o + 3], max, `case ${c}: maximum`);
        assert.equal(got[o + 6], prefix2, `case ${c} thread ${t}: prefix`);
        assert.equal(
          got[o + 7],
          prefix3,
          `case ${c} thread ${t}: scan (one barrier)`,
        );
        assert.equal(got[o + 8], total3, `case ${c}: scan total (one barrier)`);
        assert.equal(got[o + 9], max3, `case ${c}: maximum (one barrier)`);
        if (t === 0) {
          assert.equal(
            got[o + 10],
            max4,
            `case ${c}: the first thread's maximum`,
          );
        }
        prefix += xs[t] & 0xffff;
        prefix2 += (xs[t] >> 8) & 0xff;
        prefix3 += (xs[t] >>> 4) & 0xffff;
        bound = Math.min(bound, got[o + 4]);
      }
      const size = got[OUTS * WG * c + 5];
      let want = 0; // without subgroups: 0, which every x reaches
      if (subgroups) {
        assert.ok(size >= 4 && size <= WG, `subgroup size ${size}`);
        const groups = WG / size;
        const cth = Math.min(Math.ceil(k / groups), size);
        want = Infinity;
        for (let g = 0; g < groups; g++) {
          const lanes = xs.slice(g * size, (g + 1) * size).sort((a, b) =>
            b - a
          );
          // The c-th largest with the lane-index bits cleared (they carry
          // each lane's index while the rounds run).
          want = Math.min(want, (lanes[cth - 1] & ~(size - 1)) >>> 0);
        }
      }
      assert.equal(bound, want, `case ${c} (k ${k}): bound`);
      assert.ok(
        xs.filter((v) => v >= bound).length >= k,
        `case ${c}: fewer than k values reach the bound`,
      );
      boundsChecked++;
    }
    assert.equal(boundsChecked, ks.length);
  });
}
