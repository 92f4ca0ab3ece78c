// MicroAdam spec steps 1-4, one workgroup per top-k block: error-corrected
// gradient a = g + e, exact top-k of |a| (radix select on the bits of |a|),
// the window row of this step, and the min/max of the residual per EF block
// (accumulated with atomics; EF blocks may straddle top-k blocks).

@group(0) @binding(0) var<uniform> cfg: Config;
@group(0) @binding(1) var<storage, read> step: Step;
@group(0) @binding(2) var<storage, read> table: SegTable;
@group(0) @binding(3) var<storage, read> grads: array<u32>;
@group(0) @binding(4) var<storage, read> codes: array<u32>;
@group(0) @binding(5) var<storage, read> stats: array<u32>;
@group(0) @binding(6) var<storage, read_write> scratch: array<atomic<u32>>;
@group(0) @binding(7) var<storage, read_write> window: array<u32>;

const WG: u32 = 256u;
const SLOTS: u32 = 256u; // EF blocks a workgroup can reduce locally

struct BlockInfo {
  skip: u32,
  seg: u32,
  start: u32,   // segment-local coordinate of the block's first element
  n: u32,       // elements in the block
  k: u32,       // entries to keep
  row: u32,     // window entry where this step's row of the block starts
  q_first: u32, // first global EF block the block touches
  q_count: u32, // number of EF blocks it touches
}

var<workgroup> info: BlockInfo;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> scan: array<u32, 256>;
var<workgroup> pick: vec2<u32>; // chosen digit, count strictly above it
var<workgroup> slot_min: array<atomic<u32>, SLOTS>;
var<workgroup> slot_max: array<atomic<u32>, SLOTS>;

// Folds one thread's running min/max of EF block q into the block's slot (or
// straight into global memory when the block spans too many EF blocks).
fn flush(q: u32, min_key: u32, max_key: u32, local: bool) {
  if (q == 0xffffffffu) { return; }
  if (local) {
    atomicMax(&slot_min[q - info.q_first], min_key);
    atomicMax(&slot_max[q - info.q_first], max_key);
  } else {
    atomicMax(&scratch[2u * q], min_key);
    atomicMax(&scratch[2u * q + 1u], max_key);
  }
}

// Inclusive prefix sum of scan[] over the workgroup (Hillis-Steele).
fn scan_inclusive(tid: u32) {
  for (var off = 1u; off < WG; off = off << 1u) {
    var v = scan[tid];
    if (tid >= off) { v = v + scan[tid - off]; }
    workgroupBarrier();
    scan[tid] = v;
    workgroupBarrier();
  }
}

// Suffix sum: scan[t] = sum of scan[u] for u >= t.
fn scan_suffix(tid: u32) {
  for (var off = 1u; off < WG; off = off << 1u) {
    var v = scan[tid];
    if (tid + off < WG) { v = v + scan[tid + off]; }
    workgroupBarrier();
    scan[tid] = v;
    workgroupBarrier();
  }
}

@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) tid: u32,
) {
  let w = linear_workgroup(wid, nwg);
  if (tid == 0u) {
    var bi: BlockInfo;
    bi.skip = select(0u, 1u, step.skip != 0u || w >= table.total_blocks);
    if (bi.skip == 0u) {
      bi.seg = find_segment(w, false);
      let s = table.segs[bi.seg];
      let b = w - s.first_block;
      bi.start = b * s.block;
      bi.n = min(s.block, s.len - bi.start);
      bi.k = select(s.k_tail, s.k_block, bi.n == s.block);
      bi.row = s.window_off + b * cfg.window * s.k_block + step.slot * bi.k;
      bi.q_first = ef_block(s, bi.start);
      bi.q_count = ef_block(s, bi.start + bi.n - 1u) - bi.q_first + 1u;
    }
    info = bi;
  }
  atomicStore(&slot_min[tid], 0u);
  atomicStore(&slot_max[tid], 0u);
  let blk = workgroupUniformLoad(&info);
  if (blk.skip != 0u) { return; }
  let s = table.segs[blk.seg];

  // Radix select: the k-th largest key, one 8-bit digit per pass from the top.
  let passes = select(4u, 2u, BF16);
  var prefix = 0u;
  var rem = blk.k; // entries still to place at or below the current prefix
  for (var round = 0u; round < passes; round++) {
    let shift = (passes - 1u - round) * 8u;
    atomicStore(&hist[tid], 0u);
    workgroupBarrier();
    let high = select(0xffffffffu << (shift + 8u), 0u, shift + 8u >= 32u);
    for (var j = tid; j < blk.n; j += WG) {
      let key = topk_key(corrected(s, blk.start + j));
      if ((key & high) == (prefix & high)) {
        atomicAdd(&hist[(key >> shift) & 255u], 1u);
      }
    }
    workgroupBarrier();
    scan[tid] = atomicLoad(&hist[tid]);
    workgroupBarrier();
    scan_suffix(tid);
    let above = select(0u, scan[min(tid + 1u, WG - 1u)], tid + 1u < WG);
    if (scan[tid] >= rem && above < rem) { pick = vec2<u32>(tid, above); }
    let chosen = workgroupUniformLoad(&pick);
    prefix = prefix | (chosen.x << shift);
    rem = rem - chosen.y;
  }
  let threshold = prefix;
  let ties = rem;                 // entries equal to the threshold to keep
  let greater = blk.k - rem;      // entries strictly above it

  // Compaction in index order: strictly greater entries first (ascending
  // index), then the first `ties` threshold entries (ascending index), as the
  // authors' kernel lays out a row. The residual feeds the EF statistics.
  let local = blk.q_count <= SLOTS;
  var g_base = 0u;
  var t_base = 0u;
  var cur_q = 0xffffffffu;
  var cur_min = 0u;
  var cur_max = 0u;
  for (var base = 0u; base < blk.n; base += WG) {
    let j = base + tid;
    let valid = j < blk.n;
    var a = 0.0;
    var is_g = false;
    var is_t = false;
    if (valid) {
      a = corrected(s, blk.start + j);
      let key = topk_key(a);
      is_g = key > threshold;
      is_t = key == threshold;
    }
    let mine = select(0u, 1u, is_g) | select(0u, 0x10000u, is_t);
    scan[tid] = mine;
    workgroupBarrier();
    scan_inclusive(tid);
    let before = scan[tid] - mine;
    let total = scan[WG - 1u];
    if (valid) {
      let gb = g_base + (before & 0xffffu);
      let tb = t_base + (before >> 16u);
      let keep = is_g || (is_t && tb < ties);
      if (keep) {
        let pos = select(greater + tb, gb, is_g);
        window[blk.row + pos] = j | ((bitcast<u32>(bf16_round(a)) >> 16u) << 16u);
      }
      let r = select(a, 0.0, keep);
      let q = ef_block(s, blk.start + j);
      let kmax = ordered_enc(r);
      if (q != cur_q) {
        flush(cur_q, cur_min, cur_max, local);
        cur_q = q;
        cur_min = ~kmax;
        cur_max = kmax;
      } else {
        cur_min = max(cur_min, ~kmax);
        cur_max = max(cur_max, kmax);
      }
    }
    g_base = g_base + (total & 0xffffu);
    t_base = t_base + (total >> 16u);
    workgroupBarrier();
  }
  flush(cur_q, cur_min, cur_max, local);
  workgroupBarrier();
  if (local && tid < blk.q_count) {
    let q = blk.q_first + tid;
    atomicMax(&scratch[2u * q], atomicLoad(&slot_min[tid]));
    atomicMax(&scratch[2u * q + 1u], atomicLoad(&slot_max[tid]));
  }
}
