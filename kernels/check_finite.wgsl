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

@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) tid: u32,
) {
  let w = linear_workgroup(wid, nwg);
  if (w >= table.total_tiles) { return; }
  let s = table.segs[find_segment(w, true)];
  let lo = (w - s.first_tile) * TILE;
  // |g| >= 2^L exactly when the exponent field is >= 127 + L (NaN and Inf too).
  let f32_limit = (127u + GRADIENT_LIMIT_LOG2) << 23u;
  let bf16_limit = (127u + GRADIENT_LIMIT_LOG2) << 7u;
  var bad = false;
  for (var i = 0u; i < ITEMS; i++) {
    let e = lo + (i * WG + tid) * LANES;
    if (e >= s.len) { break; }
    if (BF16) {
      // Two elements per word (bf16 batches take the LANES = 1 variant).
      let n = s.grad_off + e;
      let x = grads[n >> 1u];
      let hb = select(x, x >> VU(16u), (n & 1u) == 1u) & VU(0x7f80u);
      bad = bad || any(hb >= VU(bf16_limit));
    } else {
      let x = grads[(s.grad_off + e) / LANES];
      bad = bad || any((x & VU(0x7f800000u)) >= VU(f32_limit));
    }
  }
  if (bad) { atomicMin(&flags[0], s.tensor); }
}
