// Adam, AdamW and AMSGrad: one elementwise pass over every segment of a
// batch (f32 parameters, gradients and moments).

@group(0) @binding(0) var<uniform> cfg: Config;
@group(0) @binding(1) var<storage, read> step: Step;
@group(0) @binding(2) var<storage, read> table: SegTable;
@group(0) @binding(3) var<storage, read_write> params: array<f32>;
@group(0) @binding(4) var<storage, read> grads: array<f32>;
@group(0) @binding(5) var<storage, read_write> exp_avg: array<f32>;
@group(0) @binding(6) var<storage, read_write> exp_avg_sq: array<f32>;
@group(0) @binding(7) var<storage, read_write> max_exp_avg_sq: array<f32>;

@compute @workgroup_size(128)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) tid: u32,
) {
  let w = linear_workgroup(wid, nwg);
  if (step.skip != 0u || w >= table.total_tiles) { return; }
  let s = table.segs[find_segment(w, true)];
  let h = step.param_groups[s.param_group];
  let b1 = cfg.beta1;
  let b2 = cfg.beta2;
  let step_size = h.lr / step.c1;
  // Thread tid takes elements tid, tid + 128, … of the tile (coalesced).
  let lo = (w - s.first_tile) * TILE + tid;
  for (var c = lo; c < min(lo + TILE, s.len); c += TILE_THREADS) {
    let pi = s.param_off + c;
    let si = s.state_off + c;
    var g = grads[s.grad_off + c];
    var p = params[pi];
    if (h.wd > 0.0) {
      if (cfg.decoupled == 1u) { p = p * h.decay; } else { g = g + h.wd * p; }
    }
    let m = b1 * exp_avg[si] + (1.0 - b1) * g;
    let v = b2 * exp_avg_sq[si] + ((1.0 - b2) * g) * g;
    exp_avg[si] = m;
    exp_avg_sq[si] = v;
    var vv = v;
    if (cfg.amsgrad == 1u) {
      vv = max(max_exp_avg_sq[si], v);
      max_exp_avg_sq[si] = vv;
    }
    let denom = sqrt(vv) / step.c2 + cfg.eps;
    params[pi] = p - step_size * (m / denom);
  }
}
