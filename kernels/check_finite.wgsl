// Step 1 of the Adam family's step: look for NaN, ±Inf and magnitudes of
// 2^GRADIENT_LIMIT_LOG2 or more in the gradients (src/core/limits.ts says
// why). The first offending tensor index lands in flags[0] (atomic min); the
// prologue turns it into a skipped step. LANES and VU come from
// src/gpu/kernels.ts (4 and vec4<u32> for 16-byte aligned batches).

override BF16: bool = false;

@group(0) @binding(0) var<storage, read> table: SegTable;
@group(0) @binding(1) var<storage, read> grads: array<VU>;
@group(0) @binding(2) var<storage, read_write> flags: array<atomic<u32>>;

const WG: u32 = 256u;
const ITEMS: u32 = TILE / LANES / WG;

// A workgroup checks CHECK_TILES consecutive tiles, segment by segment
// (they mostly lie in one), with one search of the segment table: one tile
// per workgroup, each with its own search, made the check 5 % slower at
// 2^28 and AdamW over the LLaMA-2-7B shapes 4 % slower on the H200
// (bench/RESULTS.md, round 20).
@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) tid: u32,
) {
  let first = linear_workgroup(wid, nwg) * CHECK_TILES;
  if (first >= table.total_tiles) { return; }
  let end = min(first + CHECK_TILES, table.total_tiles);
  var si = find_segment(first, true);
  var t = first;
  loop {
    let s = table.segs[si];
    var seg_end = end;
    if (si + 1u < table.num_segs) { seg_end = min(end, table.segs[si + 1u].first_tile); }
    if (seg_end > t && check_tiles(s, t - s.first_tile, seg_end - t, tid)) {
      atomicMin(&flags[0], s.tensor);
    }
    t = seg_end;
    if (t >= end) { break; }
    si++;
  }
}

// Whether some gradient of tiles first .. first + count - 1 of segment s
// is NaN, infinite or too large: the largest exponent field of the
// thread's elements, compared once (the loads do not wait on each other).
fn check_tiles(s: Seg, first: u32, count: u32, tid: u32) -> bool {
  // |g| >= 2^L exactly when the exponent field is >= 127 + L (NaN and Inf too).
  let f32_limit = (127u + GRADIENT_LIMIT_LOG2) << 23u;
  let bf16_limit = (127u + GRADIENT_LIMIT_LOG2) << 7u;
  var top = VU(0u);
  for (var i = 0u; i < count * ITEMS; i++) {
    let e = first * TILE + (i * WG + tid) * LANES;
    if (e >= s.len) { break; }
    if (BF16) {
      // Two elements per word (bf16 batches take the LANES = 1 variant).
      let n = s.grad_off + e;
      let x = grads[n >> 1u];
      top = max(top, select(x, x >> VU(16u), (n & 1u) == 1u) & VU(0x7f80u));
    } else {
      top = max(top, grads[(s.grad_off + e) / LANES] & VU(0x7f800000u));
    }
  }
  // Two returns: select(.., BF16) here failed wgpu's override processing.
  if (BF16) { return any(top >= VU(bf16_limit)); }
  return any(top >= VU(f32_limit));
}
