// MicroAdam spec steps 1-4 on the general path (any D and Q), one workgroup
// per top-k block: the non-finite check, the error-corrected gradient
// a = g + e, exact top-k of |a| (radix select on the bits of |a|), this
// step's window row (staged in `work`; the update kernel commits it once the
// step is known to apply), and the min/max of the residual per EF block
// (accumulated with atomics in `work`; EF blocks may straddle top-k blocks).
// Runs before the prologue.

@group(0) @binding(0) var<uniform> cfg: Config;
@group(0) @binding(1) var<storage, read> step: Step;
@group(0) @binding(2) var<storage, read> table: SegTable;
@group(0) @binding(3) var<storage, read> grads: array<u32>;
@group(0) @binding(4) var<storage, read> codes: array<u32>;
@group(0) @binding(5) var<storage, read> stats: array<u32>;
// EF statistics keys (2 words per EF block), then the staged window rows.
@group(0) @binding(6) var<storage, read_write> work: array<atomic<u32>>;
@group(0) @binding(7) var<storage, read_write> flags: array<atomic<u32>>;

const WG: u32 = 256u;
const SLOTS: u32 = 256u;   // EF blocks a workgroup reduces locally
const TABLE_QS: u32 = 64u; // EF blocks whose 16 dequantized values are tabulated

// The block, as thread 0 found it, for the whole workgroup.
struct BlockInfo {
  skip: u32,
  b: TopkBlock,
  q_first: u32, // first global EF block the block touches
  q_count: u32, // number of EF blocks it touches
}

var<workgroup> info: BlockInfo;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> scan: array<u32, 256>;
var<workgroup> counts: array<vec2<u32>, 256>;
var<workgroup> pick: vec2<u32>; // chosen digit, count strictly above it
var<workgroup> slot_min: array<atomic<u32>, SLOTS>;
var<workgroup> slot_max: array<atomic<u32>, SLOTS>;
// e for every (EF block, code) of the block: the radix passes read a many
// times, and this makes each read a lookup instead of an exact fma.
var<workgroup> etab: array<f32, 1024>;

// a = g + e of block element j.
fn block_a(s: Seg, blk: BlockInfo, j: u32) -> f32 {
  let c = blk.b.start + j;
  if (blk.q_count > TABLE_QS) { return corrected(s, c); }
  let e = etab[(ef_block(s, c) - blk.q_first) * 16u + load_code(s, c)];
  return add_error(load_grad(s.grad_off + c), e);
}

// Folds one thread's running min/max of EF block q into the block's slot (or
// straight into global memory when the block spans too many EF blocks).
fn flush(q: u32, min_key: u32, max_key: u32, local: bool) {
  if (q == 0xffffffffu) { return; }
  if (local) {
    atomicMax(&slot_min[q - info.q_first], min_key);
    atomicMax(&slot_max[q - info.q_first], max_key);
  } else {
    atomicMax(&work[2u * q], min_key);
    atomicMax(&work[2u * q + 1u], max_key);
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
    bi.skip = select(0u, 1u, w >= table.total_blocks);
    if (bi.skip == 0u) {
      let b = topk_block(w);
      bi.b = b;
      let s = table.segs[b.seg];
      bi.q_first = ef_block(s, b.start);
      bi.q_count = ef_block(s, b.start + b.n - 1u) - bi.q_first + 1u;
    }
    info = bi;
  }
  atomicStore(&slot_min[tid], 0u);
  atomicStore(&slot_max[tid], 0u);
  let blk = workgroupUniformLoad(&info);
  if (blk.skip != 0u) { return; }
  let s = table.segs[blk.b.seg];
  set_code_halves(call_before_prologue());
  if (blk.q_count <= TABLE_QS) {
    for (var i = tid; i < blk.q_count * 16u; i += WG) {
      let st = stats[blk.q_first + i / 16u];
      let mn = bf16_value(st);
      let mx = bf16_value(st >> 16u);
      etab[i] = ef_value(i % 16u, mn, ef_unit(mn, mx));
    }
  }
  workgroupBarrier();

  // Radix select: the k-th largest key, one 8-bit digit per round from the top.
  let rounds = select(4u, 2u, BF16);
  var prefix = 0u;
  var rem = blk.b.k; // entries still to place at or below the current prefix
  for (var round = 0u; round < rounds; round++) {
    let shift = (rounds - 1u - round) * 8u;
    atomicStore(&hist[tid], 0u);
    workgroupBarrier();
    let high = select(0xffffffffu << (shift + 8u), 0u, shift + 8u >= 32u);
    for (var j = tid; j < blk.b.n; j += WG) {
      let key = topk_key(block_a(s, blk, j));
      if ((key & high) == (prefix & high)) {
        atomicAdd(&hist[(key >> shift) & 255u], 1u);
      }
    }
    workgroupBarrier();
    // Suffix sums: scan[t] = number of keys in digits >= t.
    scan[tid] = atomicLoad(&hist[tid]);
    workgroupBarrier();
    for (var off = 1u; off < WG; off = off << 1u) {
      var v = scan[tid];
      if (tid + off < WG) { v = v + scan[tid + off]; }
      workgroupBarrier();
      scan[tid] = v;
      workgroupBarrier();
    }
    let above = select(0u, scan[min(tid + 1u, WG - 1u)], tid + 1u < WG);
    if (scan[tid] >= rem && above < rem) { pick = vec2<u32>(tid, above); }
    let chosen = workgroupUniformLoad(&pick);
    prefix = prefix | (chosen.x << shift);
    rem = rem - chosen.y;
  }
  let threshold = prefix;
  let ties = rem;            // entries equal to the threshold to keep
  let greater = blk.b.k - rem; // entries strictly above it

  // Compaction: each thread owns a contiguous run of the block, so one scan
  // of per-thread counts orders every entry by index. The row holds the
  // strictly greater entries first (ascending index), then the first `ties`
  // threshold entries (ascending index), as the authors' kernel lays it out.
  let run = (blk.b.n + WG - 1u) / WG;
  let c0 = min(tid * run, blk.b.n);
  let c1 = min(c0 + run, blk.b.n);
  var mine = vec2<u32>(0u, 0u);
  var bad = false;
  for (var j = c0; j < c1; j++) {
    let key = topk_key(block_a(s, blk, j));
    mine = mine + vec2<u32>(select(0u, 1u, key > threshold), select(0u, 1u, key == threshold));
    bad = bad || grad_too_large(s.grad_off + blk.b.start + j);
  }
  if (bad) { atomicMin(&flags[0], s.tensor); }
  counts[tid] = mine;
  workgroupBarrier();
  for (var off = 1u; off < WG; off = off << 1u) {
    var v = counts[tid];
    if (tid >= off) { v = v + counts[tid - off]; }
    workgroupBarrier();
    counts[tid] = v;
    workgroupBarrier();
  }
  var before = counts[tid] - mine;

  // The residual (kept entries zeroed) feeds the EF statistics.
  let local = blk.q_count <= SLOTS;
  var cur_q = 0xffffffffu;
  var cur_min = 0u;
  var cur_max = 0u;
  for (var j = c0; j < c1; j++) {
    let a = block_a(s, blk, j);
    let key = topk_key(a);
    let is_g = key > threshold;
    let is_t = key == threshold;
    let keep = is_g || (is_t && before.y < ties);
    if (keep) {
      let pos = select(greater + before.y, before.x, is_g);
      atomicStore(&work[blk.b.row + pos], window_entry(j, a));
    }
    before = before + vec2<u32>(select(0u, 1u, is_g), select(0u, 1u, is_t));
    let r = select(a, 0.0, keep);
    let q = ef_block(s, blk.b.start + j);
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
  flush(cur_q, cur_min, cur_max, local);
  workgroupBarrier();
  if (local && tid < blk.q_count) {
    let q = blk.q_first + tid;
    atomicMax(&work[2u * q], atomicLoad(&slot_min[tid]));
    atomicMax(&work[2u * q + 1u], atomicLoad(&slot_max[tid]));
  }
}
