// MicroAdam spec steps 6-9 for one top-k block of the fast path (its codes
// were written by microadam_select_fast). The window rows of the block (the
// staged row in this step's slot, committed there as it is read) are
// grouped by owner thread (a counting sort), every entry finds its place in
// its group by (coordinate, slot) by counting the group's entries below it,
// and the thread holding a coordinate's first entry rebuilds its M and S in
// slot order. Only coordinates the window touches get the Adam update:
// elsewhere M = S = 0, so u = 0 and p + (-lr)·0 = p exactly: that thread
// applies step 9 (and weight decay) too. With weight decay, each thread also
// decays its own untouched words while the sort runs. A skipped step only
// carries the codes over to the other half.
//
// No thread walks more than its entries' groups and one coordinate's slots
// per entry. The earlier form, where each owner thread insertion-sorted its
// group and then walked all of it, was quadratic in a group's size (160
// entries when one thread owns every selected coordinate of a block, as in
// tests/optim_microadam_test.ts), and on the H200's benchmark data 2.5 %
// (f32) and 4.6 % (bf16) slower (bench/RESULTS.md, round 13).

@group(0) @binding(0) var<uniform> cfg: Config;
@group(0) @binding(1) var<storage, read> step: Step;
@group(0) @binding(2) var<storage, read> table: SegTable;
// Lane 0's parameters; lanes 1.. (tensors of other buffers in the same
// batch) are bindings 7.. that lane_param and set_lane_param reach
// (src/gpu/kernels.ts writes them for the device's lane count).
@group(0) @binding(3) var<storage, read_write> params: array<u32>;
@group(0) @binding(4) var<storage, read_write> window: array<u32>;
@group(0) @binding(5) var<storage, read> work: array<u32>;
@group(0) @binding(6) var<storage, read_write> codes: array<u32>;

override BF16: bool = false;

const VPT: u32 = FAST_BLOCK / 256u; // coordinates (f32) or words (bf16) per thread
// Window entries of a block per thread: two, taken as entries tid and
// tid + 256 (written out below, so that both loads are in flight at once).
const_assert FAST_WINDOW_ENTRIES == 2u * WG_SIZE;

var<workgroup> decay1: array<f32, FAST_WINDOW>; // beta1^age of slot i
var<workgroup> decay2: array<f32, FAST_WINDOW>;
// Per owner thread: its entry count, then its group as first | count << 16.
var<workgroup> owned: array<atomic<u32>, 256>;
// Per owner thread, with weight decay: bit i set when its i-th coordinate
// (see item_of) is in the window.
var<workgroup> owned_items: array<atomic<u32>, 256>;
// Entries (coordinate << 20 | slot << 16 | bf16 value) grouped by owner, in
// no order within a group.
var<workgroup> grouped: array<u32, FAST_WINDOW_ENTRIES>;
// The entries by (owner, coordinate, slot).
var<workgroup> sorted: array<u32, FAST_WINDOW_ENTRIES>;

// Entry j of the block's window rows in slot order, as coordinate << 20 |
// slot << 16 | bf16 value. This step's row comes from the staged copy, and
// is committed to its slot here: every entry is taken once per block.
fn take_entry(blk: TopkBlock, base: u32, slot: u32, j: u32) -> u32 {
  let i = div_small(j, blk.k);
  let e = j - i * blk.k;
  var entry: u32;
  if (i == slot) {
    entry = work[blk.row + e];
    window[base + i * blk.k + e] = entry;
  } else {
    entry = window[base + i * blk.k + e];
  }
  return ((entry & 0xffffu) << 20u) | (i << 16u) | (entry >> 16u);
}

// j / k for j < 2^16, k >= 1: a float quotient, corrected to the exact one
// (a u32 division by a run-time k is about 20 instructions on the H200).
fn div_small(j: u32, k: u32) -> u32 {
  var q = u32(f32(j) / f32(k));
  if (q * k > j) { q -= 1u; } else if ((q + 1u) * k <= j) { q += 1u; }
  return q;
}

// A workgroup walks blocks w, w + grid, ... (see microadam_select_fast).
@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) tid: u32,
) {
  wg_init(tid);
  let rows = min(step.t, cfg.window);
  if (step.skip == 0u && tid < rows) {
    let age = (step.t - 1u - tid) % cfg.window;
    decay1[tid] = pow_f32(cfg.beta1, age);
    decay2[tid] = pow_f32(cfg.beta2, age);
  }
  let grid = nwg.x * nwg.y;
  for (var w = linear_workgroup(wid, nwg); w < table.total_blocks; w += grid) {
    update_block(w, tid);
  }
}

// Steps 6-9 for block w. The counts into `owned` (cleared by the block
// before, after its last read) come first; every other workgroup write of
// this block comes after the barrier that follows them, which no thread
// reaches before it has finished the block before.
fn update_block(w: u32, tid: u32) {
  let blk = topk_block(w);
  let s = table.segs[blk.seg];
  let base = s.window_off + blk.index * cfg.window * s.k_block; // first window entry
  let half = arrayLength(&codes) / 2u;
  // The GPU's count of this call (the prologue has counted it): see
  // microadam_common.wgsl on the two halves.
  let out_base = select(0u, half, (step.calls & 1u) == 1u);
  if (step.skip != 0u) {
    // select_fast rewrote this block's codes into the output half: restore.
    let first = s.codes_off + blk.start / 8u;
    for (var i = tid; i < (blk.n + 7u) / 8u; i += WG_SIZE) {
      codes[out_base + first + i] = codes[half - out_base + first + i];
    }
    return;
  }

  let rows = min(step.t, cfg.window);
  // Each thread takes two entries (both loads in flight at once, and before
  // the barrier, which then waits while they are) and keeps them in
  // registers.
  let total = rows * blk.k;
  let this_slot = step.slot;
  let has0 = tid < total;
  let has1 = tid + WG_SIZE < total;
  var ent0 = 0u;
  var ent1 = 0u;
  if (has0) { ent0 = take_entry(blk, base, this_slot, tid); }
  if (has1) { ent1 = take_entry(blk, base, this_slot, tid + WG_SIZE); }
  // The thread that rebuilds a coordinate's moments applies steps 6 and 9
  // to it too (see apply_direct), so the parameter word of each entry's
  // coordinate is loaded now, in flight through the sort's barriers (a
  // coordinate's other entries load it too and drop it). Both in one call
  // (a lane's binding is picked by a switch); without its second entry a
  // thread loads its block's first word for nothing.
  let h = step.param_groups[s.param_group];
  let decay = h.wd > 0.0;
  let at0 = param_word(s.param_off + blk.start + (ent0 >> 20u));
  let at1 = param_word(s.param_off + blk.start + (ent1 >> 20u));
  let p = lane_param2(s.lane, at0, at1);
  var p0 = p.x;
  var p1 = p.y;
  if (decay) {
    // Step 6 on the loaded words: apply_direct then stores them with step 9.
    p0 = decayed_word(p0, h.decay, ((ent0 >> 20u) | 1u) < blk.n);
    p1 = decayed_word(p1, h.decay, ((ent1 >> 20u) | 1u) < blk.n);
  }
  // Count the entries per owner (an entry's rank in its group is the count
  // before it) and, with weight decay, mark the owners' touched items
  // (`owned_items`, cleared by its owner after its last read in the block
  // before).
  let owner0 = owner_of(ent0 >> 20u);
  let owner1 = owner_of(ent1 >> 20u);
  var rank0 = 0u;
  var rank1 = 0u;
  if (has0) {
    rank0 = atomicAdd(&owned[owner0], 1u);
    if (decay) { atomicOr(&owned_items[owner0], 1u << item_of(ent0 >> 20u)); }
  }
  if (has1) {
    rank1 = atomicAdd(&owned[owner1], 1u);
    if (decay) { atomicOr(&owned_items[owner1], 1u << item_of(ent1 >> 20u)); }
  }
  workgroupBarrier();
  if (decay) { decay_untouched(s.lane, blk, s.param_off, h.decay, tid); }
  let mine = atomicLoad(&owned[tid]);
  let first = wg_prefix(tid, mine);
  atomicStore(&owned[tid], first | (mine << 16u));
  workgroupBarrier();
  var group0 = 0u; // first | count << 16 of the entry's group
  var group1 = 0u;
  if (has0) {
    group0 = atomicLoad(&owned[owner0]);
    grouped[(group0 & 0xffffu) + rank0] = ent0;
  }
  if (has1) {
    group1 = atomicLoad(&owned[owner1]);
    grouped[(group1 & 0xffffu) + rank1] = ent1;
  }
  workgroupBarrier();
  // Every thread has read `owned`: cleared for the next block, which the
  // barrier below orders it before.
  atomicStore(&owned[tid], 0u);
  var at_sorted0 = 0u; // see place
  var at_sorted1 = 0u;
  if (has0) { at_sorted0 = place(ent0, group0); }
  if (has1) { at_sorted1 = place(ent1, group1); }
  workgroupBarrier();
  var run0 = 0u; // see run_at
  var run1 = 0u;
  if (has0) { run0 = run_at(at_sorted0, ent0 >> 20u, group0); }
  if (has1) { run1 = run_at(at_sorted1, ent1 >> 20u, group1); }
  if (run0 != 0u) { apply_direct(s.lane, run0, group0, at0, p0, h.neg_lr); }
  if (run1 != 0u) { apply_direct(s.lane, run1, group1, at1, p1, h.neg_lr); }
}

// The owner thread of block-local coordinate c: f32 c belongs to thread
// c mod 256, bf16 c to the thread of word c / 2.
fn owner_of(c: u32) -> u32 { return (c >> select(0u, 1u, BF16)) & 255u; }

// c's index among its owner's coordinates, in coordinate order (bit of
// `touched`): f32 c = 256·i + owner; bf16 word c / 2 = 256·(i / 2) + owner,
// half i mod 2.
fn item_of(c: u32) -> u32 {
  if (BF16) { return ((c >> 9u) << 1u) | (c & 1u); }
  return c >> 8u;
}

// Entry e's place by (coordinate, slot) among the entries of its group
// (first | count << 16 in `group`): the count of the group's entries below
// it, where e goes in `sorted` (returned). A coordinate appears at most once
// per slot, so the keys are distinct. Only that count is taken here, one
// compare a group entry; whether e is its coordinate's first entry, and how
// many it has, are read from `sorted` next to it (run_at): counting those
// here too, in the loop every entry runs, made it three counts an entry.
// Two group entries a trip, both loads in flight: a warp runs as many
// trips as its largest group needs. (These two changes: update 2 % (f32)
// and 5 % (bf16) faster on the H200, 37 -> 32 registers; bench/RESULTS.md,
// round 28.)
fn place(e: u32, group: u32) -> u32 {
  let first = group & 0xffffu;
  let key = e >> 16u; // coordinate << 4 | slot
  var below = 0u;
  let end = first + (group >> 16u);
  var x = first;
  for (; x + 1u < end; x += 2u) {
    let a = grouped[x] >> 16u;
    let b = grouped[x + 1u] >> 16u;
    below += select(0u, 1u, a < key) + select(0u, 1u, b < key);
  }
  if (x < end) { below += select(0u, 1u, (grouped[x] >> 16u) < key); }
  sorted[first + below] = e;
  return first + below;
}

// For the entry of coordinate c at `sorted` index `at` of its group (first
// | count << 16 in `group`), once every entry is placed: when it is its
// coordinate's first entry, where the coordinate's entries start | how many
// << 16 (they follow it in slot order); else 0.
fn run_at(at: u32, c: u32, group: u32) -> u32 {
  let first = group & 0xffffu;
  let end = first + (group >> 16u);
  if (at > first && (sorted[at - 1u] >> 20u) == c) { return 0u; }
  return at | ((1u + run_length(at + 1u, c, end)) << 16u);
}

// How many entries of coordinate c follow one another in `sorted` from
// index `at`, before `end`.
fn run_length(at: u32, c: u32, end: u32) -> u32 {
  var n = 0u;
  while (at + n < end && (sorted[at + n] >> 20u) == c) { n++; }
  return n;
}

// Spec steps 7-8 for the coordinate whose entries are sorted[start ..
// start + count) in slot order (run = start | count << 16): M and S, then u.
fn moments_u(run: u32) -> f32 {
  var m = 0.0;
  var v2 = 0.0;
  let start = run & 0xffffu;
  for (var x = start; x < start + (run >> 16u); x++) {
    let e = sorted[x];
    let slot = (e >> 16u) & 15u;
    let v = bf16_value(e);
    m = fma_short(decay1[slot], v, m);
    v2 = fma_short(decay2[slot] * v, v, v2);
  }
  return (step.c1 * m) / (sqrt(step.c2 * v2) + cfg.eps);
}

// The parameter word of element e: e itself, or for bf16 its pair's.
fn param_word(e: u32) -> u32 { return e >> select(0u, 1u, BF16); }

// Steps 7-9 for the coordinate whose entries are sorted[run] (run = start |
// count << 16, in its owner's group `group`), by the thread of its first
// entry, on its parameter word (`word`, at `at` in lane `lane`, already
// decayed where there is weight decay): each touched coordinate once, and
// no other (the others' weight decay is decay_untouched's). The walk over
// every owner's items issued its loads one after another, after the sort:
// this form made the kernel 11 % (f32) and 22 % (bf16) faster on the H200
// without weight decay, and with its loads at the end instead it was 76 %
// slower (bench/RESULTS.md, round 18). A bf16 word's two coordinates share an
// owner, so their entries are adjacent in the group: the even one's thread
// takes the word, and the odd one's too (its run follows), unless only the
// odd one is touched.
fn apply_direct(lane: u32, run: u32, group: u32, at: u32, word: u32, neg_lr: f32) {
  if (!BF16) {
    set_lane_param(lane, at, bitcast<u32>(step9(bitcast<f32>(word), moments_u(run), neg_lr)));
    return;
  }
  let start = run & 0xffffu;
  let first = group & 0xffffu;
  let c = sorted[start] >> 20u;
  if ((c & 1u) == 1u && start > first && (sorted[start - 1u] >> 20u) == c - 1u) { return; }
  var w = with_half(word, c & 1u, moments_u(run), neg_lr);
  if ((c & 1u) == 0u) {
    let next = start + (run >> 16u);
    let n = run_length(next, c + 1u, first + (group >> 16u));
    if (n > 0u) { w = with_half(w, 1u, moments_u(next | (n << 16u)), neg_lr); }
  }
  set_lane_param(lane, at, w);
}

// Spec step 6 for the parameter word `word`: p·f (bf16: rounded), both
// halves of a bf16 pair, the high one only where `high` (in the block).
fn decayed_word(word: u32, f: f32, high: bool) -> u32 {
  if (!BF16) { return bitcast<u32>(bitcast<f32>(word) * f); }
  let d = vec2<f32>(bitcast<f32>(word << 16u), bitcast<f32>(word & 0xffff0000u)) * f;
  let out = (bitcast<u32>(bf16_round(d.x)) >> 16u) | (bitcast<u32>(bf16_round(d.y)) & 0xffff0000u);
  return select((out & 0xffffu) | (word & 0xffff0000u), out, high);
}

// Spec step 6 (weight decay by factor f) on thread tid's words of block
// `blk` that the window does not touch (apply_direct takes the others),
// four at a time, their loads first; then `owned_items[tid]`, read only
// here, is cleared for the next block (its marks come after this block's
// later barriers). Called once the touched items are marked: it needs
// nothing of the sort that follows, so its traffic is in flight while the
// sort's barriers wait. With weight decay this made the update 20 % (f32)
// and 17 % (bf16) faster on the H200 than a walk over every word after the
// sort; at the block's end it was slower than that walk in f32, and two
// words at a time 7 % slower in f32 (bench/RESULTS.md, round 31).
fn decay_untouched(lane: u32, blk: TopkBlock, param_off: u32, f: f32, tid: u32) {
  var touched = atomicLoad(&owned_items[tid]);
  atomicStore(&owned_items[tid], 0u);
  var n_words = blk.n;
  if (BF16) {
    n_words = (blk.n + 1u) / 2u;
    // Bit 2i | bit 2i + 1 (the halves of word i) -> bit i.
    touched = (touched | (touched >> 1u)) & 0x55555555u;
    touched = (touched | (touched >> 1u)) & 0x33333333u;
    touched = (touched | (touched >> 2u)) & 0x0f0f0f0fu;
    touched = (touched | (touched >> 4u)) & 0x00ff00ffu;
    touched = (touched | (touched >> 8u)) & 0x0000ffffu;
  }
  // The thread's words in the block: the first ceil((n_words - tid) / 256).
  let count = select(0u, (n_words - tid + WG_SIZE - 1u) / WG_SIZE, n_words > tid);
  let todo = ((1u << count) - 1u) & ~touched;
  let word0 = param_word(param_off + blk.start) + tid;
  for (var i = 0u; i < select(VPT, VPT / 2u, BF16); i += 4u) {
    let m = (todo >> i) & 15u;
    if (m == 0u) { continue; }
    let at = word0 + i * WG_SIZE;
    var w = vec4<u32>(0u);
    if ((m & 1u) != 0u) { w.x = lane_param(lane, at); }
    if ((m & 2u) != 0u) { w.y = lane_param(lane, at + WG_SIZE); }
    if ((m & 4u) != 0u) { w.z = lane_param(lane, at + 2u * WG_SIZE); }
    if ((m & 8u) != 0u) { w.w = lane_param(lane, at + 3u * WG_SIZE); }
    // Only a bf16 block's last word can hold a coordinate past its end.
    let c = 2u * (i * WG_SIZE + tid) + 1u;
    if ((m & 1u) != 0u) { set_lane_param(lane, at, decayed_word(w.x, f, c < blk.n)); }
    if ((m & 2u) != 0u) { set_lane_param(lane, at + WG_SIZE, decayed_word(w.y, f, c + 2u * WG_SIZE < blk.n)); }
    if ((m & 4u) != 0u) { set_lane_param(lane, at + 2u * WG_SIZE, decayed_word(w.z, f, c + 4u * WG_SIZE < blk.n)); }
    if ((m & 8u) != 0u) { set_lane_param(lane, at + 3u * WG_SIZE, decayed_word(w.w, f, c + 6u * WG_SIZE < blk.n)); }
  }
}

// A bf16 pair with step 9 applied to its half `half` (0 low, 1 high).
fn with_half(word: u32, half: u32, u: f32, neg_lr: f32) -> u32 {
  let bits = half * 16u;
  let p = bitcast<u32>(bf16_round(step9(bf16_value(word >> bits), u, neg_lr))) >> 16u;
  return (word & ~(0xffffu << bits)) | (p << bits);
}

// Spec step 9, p - lr·u, as the authors' kernels round it.
fn step9(p: f32, u: f32, neg_lr: f32) -> f32 {
  // The authors' bf16 kernel fuses this multiply-add; u is a bf16 there,
  // so the exact fma_short applies.
  if (BF16) { return fma_short(neg_lr, bf16_round(u), p); }
  return fma(neg_lr, u, p);
}
