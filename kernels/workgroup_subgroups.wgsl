// kernels/workgroup.wgsl's reductions and scans with subgroup operations,
// for devices where src/gpu/capabilities.ts's probe found subgroups to be
// runs of consecutive invocations in lane order: one partial per subgroup in
// workgroup memory instead of one per thread, and one barrier less.

const WG_SIZE: u32 = 256u;

var<workgroup> wg_sg4: array<vec4<u32>, 64>; // per subgroup (size >= 4)
var<workgroup> wg_sg: array<u32, 64>;
var<workgroup> wg_out: vec4<u32>;

var<private> sg_first: u32; // the subgroup's first invocation
// log2 of the subgroup size (a power of two, at most WG_SIZE): shifts, not
// divisions by a run-time value, which cost about 20 instructions each.
var<private> sg_shift: u32;

fn wg_init(tid: u32) {
  sg_first = subgroupBroadcastFirst(tid);
  sg_shift = firstTrailingBit(subgroupAdd(1u));
}

// Componentwise sum of x over the workgroup.
fn wg_sum4(tid: u32, x: vec4<u32>) -> vec4<u32> {
  let s = subgroupAdd(x);
  if (tid == sg_first) { wg_sg4[tid >> sg_shift] = s; }
  workgroupBarrier();
  if (tid == 0u) {
    var t = wg_sg4[0];
    for (var j = 1u; j < (WG_SIZE >> sg_shift); j++) { t += wg_sg4[j]; }
    wg_out = t;
  }
  return workgroupUniformLoad(&wg_out);
}

// Componentwise maximum of x over the workgroup.
fn wg_max4(tid: u32, x: vec4<u32>) -> vec4<u32> {
  let s = subgroupMax(x);
  if (tid == sg_first) { wg_sg4[tid >> sg_shift] = s; }
  workgroupBarrier();
  if (tid == 0u) {
    var t = wg_sg4[0];
    for (var j = 1u; j < (WG_SIZE >> sg_shift); j++) { t = max(t, wg_sg4[j]); }
    wg_out = t;
  }
  return workgroupUniformLoad(&wg_out);
}

// wg_max4's first two components with one barrier: every subgroup reduces
// the subgroups' partials itself. The result is the same in every thread
// but is not uniform to WGSL: no barrier may depend on it. It shares
// workgroup memory with itself, wg_max4 and wg_sum4: a barrier must pass
// between it and the next call of any of them.
fn wg_max2_varying(tid: u32, x: vec2<u32>) -> vec2<u32> {
  let s = subgroupMax(x);
  if (tid == sg_first) { wg_sg4[tid >> sg_shift] = vec4<u32>(s, 0u, 0u); }
  workgroupBarrier();
  var p = vec2<u32>(0u);
  for (var j = tid - sg_first; j < (WG_SIZE >> sg_shift); j += 1u << sg_shift) {
    p = max(p, wg_sg4[j].xy);
  }
  return subgroupMax(p);
}

// wg_max2_varying's result in the workgroup's first thread only (the
// others get a partial), after one barrier: for a result that one thread
// turns into what every thread needs, then passes on through workgroup
// memory and a barrier of the caller's. The same terms as wg_max2_varying.
fn wg_max2_first(tid: u32, x: vec2<u32>) -> vec2<u32> {
  let s = subgroupMax(x);
  if (tid == sg_first) { wg_sg4[tid >> sg_shift] = vec4<u32>(s, 0u, 0u); }
  workgroupBarrier();
  var p = s;
  if (tid == 0u) {
    for (var j = 1u; j < (WG_SIZE >> sg_shift); j++) { p = max(p, wg_sg4[j].xy); }
  }
  return p;
}

// wg_scan with one barrier, on the same terms as wg_max2_varying (its
// workgroup memory is shared with wg_scan and wg_prefix).
fn wg_scan_varying(tid: u32, x: u32) -> vec2<u32> {
  let incl = subgroupInclusiveAdd(x);
  if (tid == sg_first + (1u << sg_shift) - 1u) { wg_sg[sg_first >> sg_shift] = incl; }
  workgroupBarrier();
  let group = sg_first >> sg_shift;
  var before = 0u; // of the subgroups before this one, the ones this lane reads
  var total = 0u;
  for (var j = tid - sg_first; j < (WG_SIZE >> sg_shift); j += 1u << sg_shift) {
    let t = wg_sg[j];
    total += t;
    before += select(0u, t, j < group);
  }
  return vec2<u32>(incl - x + subgroupAdd(before), subgroupAdd(total));
}

// Exclusive prefix sum of x in thread order: this thread's prefix. One
// barrier; the next call must come after another (it rewrites wg_sg).
fn wg_prefix(tid: u32, x: u32) -> u32 {
  let incl = subgroupInclusiveAdd(x);
  if (tid == sg_first + (1u << sg_shift) - 1u) { wg_sg[sg_first >> sg_shift] = incl; }
  workgroupBarrier();
  var before = incl - x;
  for (var j = 0u; j < (sg_first >> sg_shift); j++) { before += wg_sg[j]; }
  return before;
}

// Exclusive prefix sum of x in thread order: (this thread's prefix, total).
fn wg_scan(tid: u32, x: u32) -> vec2<u32> {
  let before = wg_prefix(tid, x);
  if (tid == 0u) {
    var t = 0u;
    for (var j = 0u; j < (WG_SIZE >> sg_shift); j++) { t += wg_sg[j]; }
    wg_out.x = t;
  }
  let total = workgroupUniformLoad(&wg_out).x;
  return vec2<u32>(before, total);
}

// A value that at least k of the workgroup's x reach once the workgroup's
// minimum of it is taken (k <= WG_SIZE): in each subgroup, about the c-th
// largest of its lanes' x, with c = ceil(k / subgroups), so every subgroup
// has at least c lanes at or above the minimum. No barrier: c rounds of one
// subgroup maximum each. The lanes' values carry the lane's index in their
// low bits, so the maximum names the lane that holds it, which then leaves
// (a maximum and a minimum per round before: the f32 select kernel is 2 %
// faster on the H200, bench/RESULTS.md, round 14). The result has those
// bits cleared, so each lane that left is at or above it (also when two
// lanes share the low bits and leave together); x's own low bits are lost,
// so a caller whose values live there shifts them up first.
fn wg_kth_bound_part(tid: u32, x: u32, k: u32) -> u32 {
  let group_shift = firstTrailingBit(WG_SIZE) - sg_shift; // subgroups = 2^group_shift
  let c = min((k + (1u << group_shift) - 1u) >> group_shift, 1u << sg_shift);
  let lane_bits = (1u << sg_shift) - 1u;
  var v = (x & ~lane_bits) | (tid & lane_bits);
  // The first eight rounds are written out, each only when c asks for it:
  // as a loop, each round was about 25 instructions on the H200 (naga's
  // iteration guard and the compiler's convergence checks around one
  // reduction), written out about 14 (bench/RESULTS.md, round 15); computed
  // and dropped past c, they cost the f32 select kernel 1.3 % (round 20).
  var m = 0u;
  if (c > 0u) { m = kth_round(&v); }
  if (c > 1u) { m = kth_round(&v); }
  if (c > 2u) { m = kth_round(&v); }
  if (c > 3u) { m = kth_round(&v); }
  if (c > 4u) { m = kth_round(&v); }
  if (c > 5u) { m = kth_round(&v); }
  if (c > 6u) { m = kth_round(&v); }
  if (c > 7u) { m = kth_round(&v); }
  for (var i = 8u; i < c; i++) { m = kth_round(&v); }
  return m & ~lane_bits;
}

// One round of wg_kth_bound_part: the subgroup's largest v, whose lane
// then leaves (v = 0).
fn kth_round(v: ptr<function, u32>) -> u32 {
  let m = subgroupMax(*v);
  *v = select(*v, 0u, *v == m);
  return m;
}
