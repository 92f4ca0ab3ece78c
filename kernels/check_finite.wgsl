// Step 1 of every optimizer step: look for NaN, ±Inf and magnitudes of
// 2^GRADIENT_LIMIT_LOG2 or more in the gradients (src/core/limits.ts says
// why). The first offending tensor index lands in flags[0] (atomic min); the
// prologue turns it into a skipped step.

override BF16: bool = false;

@group(0) @binding(0) var<storage, read> table: SegTable;
@group(0) @binding(1) var<storage, read> grads: array<u32>;
@group(0) @binding(2) var<storage, read_write> flags: array<atomic<u32>>;

@compute @workgroup_size(128)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) tid: u32,
) {
  let w = linear_workgroup(wid, nwg);
  if (w >= table.total_tiles) { return; }
  let s = table.segs[find_segment(w, true)];
  let lo = (w - s.first_tile) * TILE + tid;
  // |g| >= 2^L exactly when the exponent field is >= 127 + L (NaN and Inf too).
  let f32_limit = (127u + GRADIENT_LIMIT_LOG2) << 23u;
  let bf16_limit = (127u + GRADIENT_LIMIT_LOG2) << 7u;
  var bad = false;
  for (var c = lo; c < min(lo + TILE, s.len); c += TILE_THREADS) {
    let i = s.grad_off + c;
    if (BF16) {
      let h = (grads[i >> 1u] >> ((i & 1u) * 16u)) & 0x7f80u;
      bad = bad || h >= bf16_limit;
    } else {
      bad = bad || (grads[i] & 0x7f800000u) >= f32_limit;
    }
  }
  if (bad) { atomicMin(&flags[0], s.tensor); }
}
