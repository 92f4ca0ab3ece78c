// Adam, AdamW and AMSGrad: one elementwise pass over every segment of a
// batch (f32 parameters, gradients and moments). LANES and VF come from
// src/gpu/kernels.ts: 4 and vec4<f32> for batches whose segments all start
// and end on 16-byte boundaries, 1 and f32 otherwise. Each workgroup takes
// one TILE of a segment; every load is issued before the first store.

@group(0) @binding(0) var<uniform> cfg: Config;
@group(0) @binding(1) var<storage, read> step: Step;
@group(0) @binding(2) var<storage, read> table: SegTable;
@group(0) @binding(3) var<storage, read_write> params: array<VF>;
@group(0) @binding(4) var<storage, read> grads: array<VF>;
@group(0) @binding(5) var<storage, read_write> exp_avg: array<VF>;
@group(0) @binding(6) var<storage, read_write> exp_avg_sq: array<VF>;
@group(0) @binding(7) var<storage, read_write> max_exp_avg_sq: array<VF>;

override AMSGRAD: bool = false;
override DECOUPLED: bool = false; // weight decay: AdamW's, not Adam's L2

const WG: u32 = 256u;
const ITEMS: u32 = TILE / LANES / WG; // VF items per thread

@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) tid: u32,
) {
  let w = linear_workgroup(wid, nwg);
  if (step.skip != 0u || w >= table.total_tiles) { return; }
  let s = table.segs[find_segment(w, true)];
  let h = step.param_groups[s.param_group];
  let lo = (w - s.first_tile) * TILE;
  var g: array<VF, ITEMS>;
  var p: array<VF, ITEMS>;
  var m: array<VF, ITEMS>;
  var v: array<VF, ITEMS>;
  var vmax: array<VF, ITEMS>;
  // Item i is elements lo + (i·WG + tid)·LANES …: consecutive threads read
  // consecutive items.
  for (var i = 0u; i < ITEMS; i++) {
    let e = lo + (i * WG + tid) * LANES;
    if (e < s.len) {
      g[i] = grads[(s.grad_off + e) / LANES];
      p[i] = params[(s.param_off + e) / LANES];
      m[i] = exp_avg[(s.state_off + e) / LANES];
      v[i] = exp_avg_sq[(s.state_off + e) / LANES];
      if (AMSGRAD) { vmax[i] = max_exp_avg_sq[(s.state_off + e) / LANES]; }
    }
  }
  let b1 = cfg.beta1;
  let b2 = cfg.beta2;
  let step_size = h.lr / step.c1;
  let decay = h.wd > 0.0;
  for (var i = 0u; i < ITEMS; i++) {
    let e = lo + (i * WG + tid) * LANES;
    if (e >= s.len) { break; }
    var gi = g[i];
    var pi = p[i];
    if (decay) {
      if (DECOUPLED) { pi = pi * h.decay; } else { gi = gi + h.wd * pi; }
    }
    let mi = b1 * m[i] + (1.0 - b1) * gi;
    let vi = b2 * v[i] + ((1.0 - b2) * gi) * gi;
    exp_avg[(s.state_off + e) / LANES] = mi;
    exp_avg_sq[(s.state_off + e) / LANES] = vi;
    var vv = vi;
    if (AMSGRAD) {
      vv = max(vmax[i], vi);
      max_exp_avg_sq[(s.state_off + e) / LANES] = vv;
    }
    let denom = sqrt(vv) / step.c2 + cfg.eps;
    params[(s.param_off + e) / LANES] = pi - step_size * (mi / denom);
  }
}
