// Step 1 of every optimizer step: look for NaN/Inf in the gradients. The
// first offending tensor index lands in flags[0] (atomic min); the prologue
// turns it into a skipped step.

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
  var bad = false;
  for (var c = lo; c < min(lo + TILE, s.len); c += TILE_THREADS) {
    let i = s.grad_off + c;
    if (BF16) {
      let h = (grads[i >> 1u] >> ((i & 1u) * 16u)) & 0x7f80u;
      bad = bad || h == 0x7f80u;
    } else {
      bad = bad || (grads[i] & 0x7f800000u) == 0x7f800000u;
    }
  }
  if (bad) { atomicMin(&flags[0], s.tensor); }
}
