// MicroAdam spec steps 6-9 for one top-k block of the fast path (its codes
// were written by microadam_select_fast). The window rows of the block (the
// staged row in this step's slot, committed there as it is read) are
// counting-sorted by owner thread, each thread orders its few entries by
// (coordinate, slot) and rebuilds M and S in slot order in registers. Only
// coordinates the window touches get the Adam update: elsewhere M = S = 0,
// so u = 0 and p + (-lr)·0 = p exactly; with weight decay every coordinate
// is still decayed. A skipped step only carries the codes over to the other
// half.

@group(0) @binding(0) var<uniform> cfg: Config;
@group(0) @binding(1) var<storage, read> step: Step;
@group(0) @binding(2) var<storage, read> table: SegTable;
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
// Entries per owner thread, then where the next one goes.
var<workgroup> owned: array<atomic<u32>, 256>;
// coordinate << 20 | slot << 16 | bf16 value, grouped by owner.
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

// Steps 6-9 for block w. `owned` is cleared first; the barrier after that
// also orders every other workgroup write of this block after the previous
// block's last reads.
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

  let h = step.param_groups[s.param_group];
  let items = select(VPT, VPT / 2u, BF16);
  let item_coords = item_coords();
  let word0 = select(s.param_off + blk.start, (s.param_off + blk.start) >> 1u, BF16);
  let rows = min(step.t, cfg.window);
  atomicStore(&owned[tid], 0u);
  // Count the entries of every row per owner: f32 coordinate c belongs to
  // thread c mod 256, bf16 coordinate c to the thread of word c / 2.
  // Each thread reads its two entries once (both loads before either is
  // used) and keeps them in registers for the scatter.
  let shift = select(0u, 1u, BF16);
  let total = rows * blk.k;
  let this_slot = step.slot;
  let has0 = tid < total;
  let has1 = tid + WG_SIZE < total;
  var ent0 = 0u;
  var ent1 = 0u;
  workgroupBarrier();
  if (has0) { ent0 = take_entry(blk, base, this_slot, tid); }
  if (has1) { ent1 = take_entry(blk, base, this_slot, tid + WG_SIZE); }
  let owner0 = ((ent0 >> 20u) >> shift) & 255u;
  let owner1 = ((ent1 >> 20u) >> shift) & 255u;
  if (has0) { atomicAdd(&owned[owner0], 1u); }
  if (has1) { atomicAdd(&owned[owner1], 1u); }
  workgroupBarrier();
  let mine = atomicLoad(&owned[tid]);
  let first = wg_prefix(tid, mine);
  atomicStore(&owned[tid], first);
  workgroupBarrier();
  if (has0) { sorted[atomicAdd(&owned[owner0], 1u)] = ent0; }
  if (has1) { sorted[atomicAdd(&owned[owner1], 1u)] = ent1; }
  workgroupBarrier();
  // This thread's entries by (coordinate, slot): a coordinate's slots come
  // out in slot order, as spec step 7 accumulates them.
  let end = first + mine;
  for (var x = first + 1u; x < end; x++) {
    let v = sorted[x];
    var y = x;
    loop {
      if (y == first || sorted[y - 1u] <= v) { break; }
      sorted[y] = sorted[y - 1u];
      y--;
    }
    sorted[y] = v;
  }

  // Spec steps 7-8 over the thread's entries, flat: a warp runs as many
  // iterations as its busiest thread has entries (not one round per item,
  // which would run the slot loop for every item some lane touches). Each
  // coordinate's M and S accumulate in slot order; its u replaces the
  // entries already consumed (sorted[first + j] for the j-th coordinate).
  // Bit l of `touched`: the thread's l-th coordinate is in the window (f32:
  // c = 256·l + tid; bf16: item l / 2 = word 256·(l / 2) + tid, half l mod 2).
  let per_item = select(8u, 9u, BF16); // log2 of coordinates per item row
  let c1 = step.c1;
  let c2 = step.c2;
  let eps = cfg.eps;
  var touched = 0u;
  var done = first;
  var m = 0.0;
  var v2 = 0.0;
  for (var x = first; x < end; x++) {
    let e = sorted[x];
    let c = e >> 20u;
    touched |= 1u << (((c >> per_item) * item_coords) | (c & (item_coords - 1u)));
    let slot = (e >> 16u) & 15u;
    let v = bf16_value(e);
    m = fma_short(decay1[slot], v, m);
    v2 = fma_short(decay2[slot] * v, v, v2);
    if (x + 1u == end || (sorted[x + 1u] >> 20u) != c) {
      sorted[done] = bitcast<u32>((c1 * m) / (sqrt(c2 * v2) + eps));
      done++;
      m = 0.0;
      v2 = 0.0;
    }
  }

  // Step 9 (and weight decay), only on the thread's live items, in
  // coordinate order. The coordinates the window touches take their u in
  // that order; elsewhere u = 0 and p + (-lr)·0 = p, so without weight decay
  // an untouched word is neither read nor written. A warp loops as often as
  // its busiest thread has live items, not once per item: nearly every warp
  // has some lane whose item l is touched, so looping over all 16 items ran
  // the load and update code 16 times (this loop made the kernel 18-20 %
  // faster on the H200, bench/RESULTS.md, round 8; taking the items two at
  // a time, loads first, was no faster).
  var walk: ItemWalk;
  walk.next = first;
  walk.touched = touched;
  walk.n = blk.n;
  walk.decay = h.wd > 0.0;
  walk.factor = h.decay;
  walk.neg_lr = h.neg_lr;
  var live = live_items(&walk, items, tid);
  while (live != 0u) {
    let i = firstTrailingBit(live);
    live &= live - 1u;
    let at = word0 + i * WG_SIZE + tid;
    params[at] = apply_item(&walk, params[at], i, tid);
  }
}

// Bit i: item i of thread tid is in the block and changes this step.
// Closed form, not a loop over the items: the items in the block are the
// first ceil((words - tid) / 256); without weight decay only the touched
// ones change (bf16: an item is touched when either of its halves is).
fn live_items(walk: ptr<function, ItemWalk>, items: u32, tid: u32) -> u32 {
  let words = ((*walk).n + item_coords() - 1u) / item_coords();
  let count = select(0u, (words - tid + WG_SIZE - 1u) / WG_SIZE, words > tid);
  let in_block = (1u << min(count, items)) - 1u;
  if ((*walk).decay) { return in_block; }
  var t = (*walk).touched;
  if (BF16) {
    // Bit 2i | bit 2i + 1 -> bit i.
    t = (t | (t >> 1u)) & 0x55555555u;
    t = (t | (t >> 1u)) & 0x33333333u;
    t = (t | (t >> 2u)) & 0x0f0f0f0fu;
    t = (t | (t >> 4u)) & 0x00ff00ffu;
    t = (t | (t >> 8u)) & 0x0000ffffu;
  }
  return t & in_block;
}

// A thread's walk over its items in coordinate order for step 9.
struct ItemWalk {
  next: u32,    // `sorted` index of the next touched coordinate's u
  touched: u32, // bit l: the thread's l-th coordinate is in the window
  n: u32,       // elements in the block
  decay: bool,
  factor: f32,  // 1 - lr·wd
  neg_lr: f32,
}

// Coordinates per item: one f32, or a bf16 pair in a word.
fn item_coords() -> u32 { return select(1u, 2u, BF16); }

// Steps 6 and 9 for the coordinates of item i (one f32, or a bf16 pair).
fn apply_item(walk: ptr<function, ItemWalk>, word_in: u32, i: u32, tid: u32) -> u32 {
  var word = word_in;
  for (var half = 0u; half < item_coords(); half++) {
    let c = (i * WG_SIZE + tid) * item_coords() + half;
    if (c >= (*walk).n) { break; }
    let bits = half * 16u;
    var p: f32;
    if (BF16) { p = bf16_value(word >> bits); } else { p = bitcast<f32>(word); }
    if ((*walk).decay) {
      p = p * (*walk).factor;
      if (BF16) { p = bf16_round(p); }
    }
    if ((((*walk).touched >> (i * item_coords() + half)) & 1u) == 1u) {
      let u = bitcast<f32>(sorted[(*walk).next]);
      (*walk).next += 1u;
      if (BF16) {
        // The authors' kernel fuses this multiply-add; u is a bf16, so the
        // exact fma_short applies.
        p = fma_short((*walk).neg_lr, bf16_round(u), p);
      } else {
        p = fma((*walk).neg_lr, u, p);
      }
    }
    if (BF16) {
      let pb = bitcast<u32>(bf16_round(p)) >> 16u;
      word = (word & ~(0xffffu << bits)) | (pb << bits);
    } else {
      word = bitcast<u32>(p);
    }
  }
  return word;
}
