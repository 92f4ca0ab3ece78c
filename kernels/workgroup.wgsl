// Reductions and scans over a workgroup of WG_SIZE (256) threads, in
// workgroup memory (kernels/workgroup_subgroups.wgsl is the same interface
// with subgroup operations). Every thread must call them, in uniform control
// flow, after wg_init; results that all threads need come back through
// workgroupUniformLoad, so they count as uniform for the barriers that
// follow. The `_varying` forms (subgroups only; here they are the uniform
// ones) give every thread the same result after one barrier, but WGSL does
// not see it as uniform. Each array is only zeroed (WGSL zero-initializes
// workgroup memory) in the kernels that use it.

const WG_SIZE: u32 = 256u;

var<workgroup> wg_red: array<u32, 256>;        // wg_scan
var<workgroup> wg_red4: array<vec4<u32>, 256>; // wg_sum4, wg_max4
var<workgroup> wg_part: array<vec4<u32>, 16>;
var<workgroup> wg_out: vec4<u32>;

fn wg_init(tid: u32) {}

// Componentwise sum of x over the workgroup.
fn wg_sum4(tid: u32, x: vec4<u32>) -> vec4<u32> {
  wg_red4[tid] = x;
  workgroupBarrier();
  if (tid < 16u) {
    var s = wg_red4[16u * tid];
    for (var j = 1u; j < 16u; j++) { s += wg_red4[16u * tid + j]; }
    wg_part[tid] = s;
  }
  workgroupBarrier();
  if (tid == 0u) {
    var s = wg_part[0];
    for (var j = 1u; j < 16u; j++) { s += wg_part[j]; }
    wg_out = s;
  }
  return workgroupUniformLoad(&wg_out);
}

// Componentwise maximum of x over the workgroup.
fn wg_max4(tid: u32, x: vec4<u32>) -> vec4<u32> {
  wg_red4[tid] = x;
  workgroupBarrier();
  if (tid < 16u) {
    var s = wg_red4[16u * tid];
    for (var j = 1u; j < 16u; j++) { s = max(s, wg_red4[16u * tid + j]); }
    wg_part[tid] = s;
  }
  workgroupBarrier();
  if (tid == 0u) {
    var s = wg_part[0];
    for (var j = 1u; j < 16u; j++) { s = max(s, wg_part[j]); }
    wg_out = s;
  }
  return workgroupUniformLoad(&wg_out);
}

// Exclusive prefix sum of x in thread order: (this thread's prefix, total).
// The total is uniform; the prefix is per thread.
fn wg_scan(tid: u32, x: u32) -> vec2<u32> {
  wg_red[tid] = x;
  workgroupBarrier();
  if (tid < 16u) {
    var s = 0u;
    for (var j = 0u; j < 16u; j++) { s += wg_red[16u * tid + j]; }
    wg_part[tid].x = s;
  }
  workgroupBarrier();
  let chunk = tid / 16u;
  var before = 0u;
  for (var j = 0u; j < chunk; j++) { before += wg_part[j].x; }
  for (var j = 16u * chunk; j < tid; j++) { before += wg_red[j]; }
  if (tid == 0u) {
    var s = 0u;
    for (var j = 0u; j < 16u; j++) { s += wg_part[j].x; }
    wg_out.x = s;
  }
  let total = workgroupUniformLoad(&wg_out).x;
  return vec2<u32>(before, total);
}

// kernels/workgroup_subgroups.wgsl's one-barrier forms; here the uniform
// ones.
fn wg_max2_varying(tid: u32, x: vec2<u32>) -> vec2<u32> { return wg_max4(tid, vec4<u32>(x, 0u, 0u)).xy; }
fn wg_scan_varying(tid: u32, x: u32) -> vec2<u32> { return wg_scan(tid, x); }
fn wg_max2_first(tid: u32, x: vec2<u32>) -> vec2<u32> { return wg_max2_varying(tid, x); }

// Exclusive prefix sum of x in thread order: this thread's prefix.
fn wg_prefix(tid: u32, x: u32) -> u32 { return wg_scan(tid, x).x; }

// A value that at least k of the workgroup's x reach once the workgroup's
// minimum of it is taken (k <= WG_SIZE). Without subgroups: 0, which every
// x reaches.
fn wg_kth_bound_part(tid: u32, x: u32, k: u32) -> u32 { return 0u; }
