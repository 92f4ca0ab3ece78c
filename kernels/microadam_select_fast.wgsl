// MicroAdam spec steps 1-5 for one top-k block that is also one EF block
// (Q = D, the default, or a tensor no larger than either), in one pass over
// the block: each of 256 threads owns 16 consecutive elements and two EF
// code words. The non-finite check, the exact k-th largest |a| (T), this
// step's window row (staged: the update kernel commits it once the step is
// known to apply), the residual's min/max, and the residual quantized with
// the new statistics into the other codes half. Runs before the prologue.
//
// The thread's 16 values of a = g + e live in registers, as four vec4 of f32
// bits, or for bf16 as two vec4 of bf16 pairs (a is a bf16 number there), and
// every walk over them (the load, the one that marks the candidates, the
// quantizer) is straight-line vector code with constant indices. A private
// array of a, which every earlier version had, went to device memory through
// the cache with each run-time index into it (bench/RESULTS.md, rounds 3 to
// 11). The per-candidate steps take their element from the registers by selects
// (element, also for a thread at the end of a tensor); the radix-digit fallback
// reads it again (elem_a). The per-element steps use float operations where one
// does the work of several integer ones (the gradient check, the largest |a|,
// the candidates' marking and the residual's range; bench/RESULTS.md, round
// 12): the kernel's time follows its instruction count, and the H200 adds
// floats at twice the rate of most integer operations.
//
// The candidates are the keys at or above a lower bound on T: the block's
// hint, an |a| that hint_rank(k) of its values reached at the step before
// (kept in `work`, any value correct: one that marks fewer than k is
// replaced), else a bound taken from the subgroups' thread maxima
// (wg_kth_bound_part). On the benchmark's data a block has 60 to 100, a
// thread usually none or one. Their keys go to workgroup memory, where each
// counts the keys at or above its own (by float compares), and T is the
// largest key that at least k reach: one pass, one barrier. When they do
// not fit (ties in bulk, or no subgroups, so no bound), radix digits over
// the candidates find T instead (threshold_by_digits).

@group(0) @binding(0) var<uniform> cfg: Config;
@group(0) @binding(1) var<storage, read> step: Step;
@group(0) @binding(2) var<storage, read> table: SegTable;
// Lane 0's gradients; lanes 1.. (tensors of other buffers in the same
// batch) are bindings 9.. that lane_grad, lane_grad4x2, lane_grad4x4 and
// lane_grad4_len reach (src/gpu/kernels.ts writes them for the device's
// lane count).
@group(0) @binding(3) var<storage, read> grads: array<u32>;
// The same gradient range, read 16 bytes at a time where aligned.
@group(0) @binding(4) var<storage, read> grads4: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read_write> codes: array<u32>;
@group(0) @binding(6) var<storage, read> stats: array<u32>;
// EF statistics keys (2 words per EF block), then the staged window rows.
@group(0) @binding(7) var<storage, read_write> work: array<atomic<u32>>;
@group(0) @binding(8) var<storage, read_write> flags: array<atomic<u32>>;

const VPT: u32 = FAST_BLOCK / 256u; // elements per thread (16)

var<workgroup> etab: array<f32, 16>; // e for each code of the block's EF block
// Radix-digit counts (threshold_by_digits), zero between its passes and
// blocks: each pass clears the counts it read.
var<workgroup> hist: array<atomic<u32>, 256>;
// The digit, the count above it, the count in it. w is unused, but a vec3
// here (with one other edit) cost two resident workgroups per SM on the H200
// (bench/RESULTS.md, round 6).
var<workgroup> pick: vec4<u32>;
// The block's candidates (see select_block), their keys as listed_key
// makes them, in any order and 0 past the last, while they fit; cand_n
// counts them even when they do not, and once every thread has read the
// count, it takes the next hint's key with the top bit set (see
// hint_rank): the workgroup memory stays as it was (a variable of its own
// changed no register count on the H200, bench/RESULTS.md, round 25).
const CAND_CAP: u32 = 256u;
var<workgroup> cand_keys: array<vec4<u32>, 64>; // CAND_CAP / 4
var<workgroup> cand_n: atomic<u32>;
var<workgroup> t_key: atomic<u32>; // listed_key(T), from the candidate list
var<workgroup> block_quantizer: Quantizer;
var<workgroup> zero_code: u32; // the code of a residual of 0 in the block

// Where a block lies and what it keeps, written by the first thread for the
// block a workgroup takes next (see look_ahead).
struct BlockPlace {
  grad: u32,   // gradient element of its first entry
  code: u32,   // EF code word of its first entry, in either half
  n: u32,      // elements in the block
  k: u32,      // entries to keep
  row: u32,    // word of `work` where its staged window row starts
  stats: u32,  // its EF block
  tensor: u32,
  lane: u32,   // the binding pair of its gradients
}
var<workgroup> place: BlockPlace;

// A workgroup walks blocks w, w + grid, ... (two or more where there are
// that many; fastGrid in src/gpu/layout.ts): what a workgroup costs to start
// (the workgroup memory WGSL zeroes) is paid once per workgroup, not once per
// block, and each block's place in the segment table is looked up once, by
// the last 16 threads while the block before it counts its candidates (see
// select_block).
@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) tid: u32,
) {
  wg_init(tid);
  set_code_halves(call_before_prologue());
  let grid = nwg.x * nwg.y;
  let w0 = linear_workgroup(wid, nwg);
  look_ahead(w0, tid);
  workgroupBarrier();
  for (var w = w0; w < table.total_blocks; w += grid) {
    select_block(w + grid, tid);
  }
}

// look_ahead by the workgroup's last 16 threads, all in one subgroup on a
// GPU, which seldom hold a candidate: done while the first subgroups count
// the candidates, the lookup's dependent loads and its division wait on
// nothing else. Done at the end of the block before, they held up the
// barrier that opened each block (select f32 4.7 % faster on the H200
// without that barrier and with the lookup here, bench/RESULTS.md, round 20).
fn look_ahead_last(w: u32, tid: u32) {
  if (tid >= WG_SIZE - 16u) { look_ahead(w, tid - (WG_SIZE - 16u)); }
}

// Block w's place (workgroup variable `place`) and the error e of each code
// of its EF block (`etab`, from the statistics the previous step stored);
// nothing past the last block. Threads 0..15 each compute the lookup and
// one code's e. Done by every thread at the block's start, the lookup's
// dependent loads and its division held up the whole block (select f32
// 4.6 % faster on the H200 without them there, bench/RESULTS.md, round 16).
fn look_ahead(w: u32, tid: u32) {
  if (tid >= 16u || w >= table.total_blocks) { return; }
  let blk = topk_block(w);
  let s = table.segs[blk.seg];
  let q = ef_block(s, blk.start); // the block is one EF block
  let st = stats[q];
  let mn = bf16_value(st);
  etab[tid] = ef_value(tid, mn, ef_unit(mn, bf16_value(st >> 16u)));
  if (tid == 0u) {
    place = BlockPlace(s.grad_off + blk.start, s.codes_off + blk.start / 8u, blk.n, blk.k, blk.row, q, s.tensor, s.lane);
  }
}

// Where a thread's elements lie.
struct Span {
  j0: u32,      // block-local index of the first
  n: u32,       // how many are in the block (<= VPT)
  grad: u32,    // f32: gradient word of the first; bf16: word of the first pair
  code: u32,    // first EF code word, in either half
  aligned: bool, // 16-byte loads reach the gradient words
  lane: u32,    // the binding pair of the gradients
}

// Gradient words first .. first + 3, the first `count` of them (the rest 0):
// the path for blocks that 16-byte loads cannot reach. Components are set
// one by one (a run-time index would put the vector in memory).
fn load_words(lane: u32, first: u32, count: u32) -> vec4<u32> {
  var v = vec4<u32>(0u);
  if (count > 0u) { v.x = lane_grad(lane, first); }
  if (count > 1u) { v.y = lane_grad(lane, first + 1u); }
  if (count > 2u) { v.z = lane_grad(lane, first + 2u); }
  if (count > 3u) { v.w = lane_grad(lane, first + 3u); }
  return v;
}

// Gradient words 4q .. 4q + 3 of the thread, of its `words` (0 past them),
// where 16-byte loads cannot reach them.
fn grad_words(sp: Span, q: u32, words: u32) -> vec4<u32> {
  return load_words(sp.lane, sp.grad + 4u * q, words - min(4u * q, words));
}

// The thread's gradient bits (bf16 in the low half), elements 4q .. 4q + 3
// in gq, and its two code words. Elements past n are not meaningful.
struct Loaded {
  g0: vec4<u32>,
  g1: vec4<u32>,
  g2: vec4<u32>,
  g3: vec4<u32>,
  cw0: u32,
  cw1: u32,
}

fn load_span(sp: Span) -> Loaded {
  var d: Loaded;
  d.cw0 = 0u;
  d.cw1 = 0u;
  if (sp.n > 0u) { d.cw0 = codes[codes_in_base + sp.code]; }
  if (sp.n > 8u) { d.cw1 = codes[codes_in_base + sp.code + 1u]; }
  // The 16-byte loads in one call, one switch over the lanes' bindings in
  // the source (the H200's compiler still branches per load; one call per
  // load made the f32 kernel 30 % slower on llvmpipe: bench/RESULTS.md,
  // round 19).
  if (BF16) {
    let words = (sp.n + 1u) / 2u;
    var w = array(vec4<u32>(0u), vec4<u32>(0u));
    if (sp.aligned) {
      w = lane_grad4x2(sp.lane, sp.grad >> 2u);
    } else {
      w = array(grad_words(sp, 0u, words), grad_words(sp, 1u, words));
    }
    let w0 = w[0];
    let w1 = w[1];
    // Two bf16 gradients per word, the low half first.
    let halves = vec4<u32>(0u, 16u, 0u, 16u);
    let low = vec4<u32>(0xffffu);
    d.g0 = (vec4<u32>(w0.xx, w0.yy) >> halves) & low;
    d.g1 = (vec4<u32>(w0.zz, w0.ww) >> halves) & low;
    d.g2 = (vec4<u32>(w1.xx, w1.yy) >> halves) & low;
    d.g3 = (vec4<u32>(w1.zz, w1.ww) >> halves) & low;
  } else {
    var w: array<vec4<u32>, 4>;
    if (sp.aligned) {
      w = lane_grad4x4(sp.lane, sp.grad >> 2u);
    } else {
      w = array(
        grad_words(sp, 0u, sp.n),
        grad_words(sp, 1u, sp.n),
        grad_words(sp, 2u, sp.n),
        grad_words(sp, 3u, sp.n),
      );
    }
    d.g0 = w[0];
    d.g1 = w[1];
    d.g2 = w[2];
    d.g3 = w[3];
  }
  return d;
}

// Gradients from their bits (bf16 in the low half).
fn grad_values(bits: vec4<u32>) -> vec4<f32> {
  if (BF16) { return bitcast<vec4<f32>>(bits << vec4<u32>(16u)); }
  return bitcast<vec4<f32>>(bits);
}

// Spec step 1, a = g + e, of gradient g with code `code`. A NaN gradient
// skips the step, so its a is never used and bf16 rounding needs no NaN case
// here, nor one for |a| >= 2^100 (on a step that is applied, |a| < 2^61: see
// listed_key). The rounding by float operations (bf16_round_split; g and e
// are bf16, so a subnormal a is one too) instead of integer ones: the bf16
// select 1.3 % faster on the H200, whose integer units issue at half the
// float rate (bench/RESULTS.md, round 32).
fn corrected_value(g: f32, code: u32) -> f32 {
  let a = g + etab[code];
  if (BF16) { return bf16_round_split(a, cfg.one); }
  return a;
}

fn corrected_bits(bits: u32, code: u32) -> f32 {
  return corrected_value(grad_values(vec4<u32>(bits)).x, code);
}

// a for four elements: gradient bits g, codes sub .. sub + 3 of word cw.
fn corrected4(g: vec4<u32>, cw: u32, sub: u32) -> vec4<f32> {
  let c = (vec4<u32>(cw) >> (vec4<u32>(sub, sub + 1u, sub + 2u, sub + 3u) * 4u)) & vec4<u32>(15u);
  let gv = grad_values(g);
  return vec4<f32>(
    corrected_value(gv.x, c.x),
    corrected_value(gv.y, c.y),
    corrected_value(gv.z, c.z),
    corrected_value(gv.w, c.w),
  );
}

// The thread's 16 values of a. f32: elements 4q .. 4q + 3 in wq, as bits.
// bf16: a is a bf16 number, so word j of w0, w1 (j = 0 .. 7) holds elements
// 2j (low half) and 2j + 1 (high half), and w2, w3 are unused: 8 registers
// instead of 16 (the bf16 kernel had 64, 4 resident workgroups per SM).
struct Corrected {
  w0: vec4<u32>,
  w1: vec4<u32>,
  w2: vec4<u32>,
  w3: vec4<u32>,
}

// Two bf16-valued vec4 as one vec4 of pairs (the low halves are zero).
fn pack_pairs(lo: vec4<f32>, hi: vec4<f32>) -> vec4<u32> {
  let l = bitcast<vec4<u32>>(lo);
  let h = bitcast<vec4<u32>>(hi);
  return vec4<u32>(l.x >> 16u, l.z >> 16u, h.x >> 16u, h.z >> 16u) |
    (vec4<u32>(l.y, l.w, h.y, h.w) & vec4<u32>(0xffff0000u));
}

fn corrected_span(d: Loaded) -> Corrected {
  let a0 = corrected4(d.g0, d.cw0, 0u);
  let a1 = corrected4(d.g1, d.cw0, 4u);
  let a2 = corrected4(d.g2, d.cw1, 0u);
  let a3 = corrected4(d.g3, d.cw1, 4u);
  if (BF16) {
    return Corrected(pack_pairs(a0, a1), pack_pairs(a2, a3), vec4<u32>(0u), vec4<u32>(0u));
  }
  return Corrected(
    bitcast<vec4<u32>>(a0),
    bitcast<vec4<u32>>(a1),
    bitcast<vec4<u32>>(a2),
    bitcast<vec4<u32>>(a3),
  );
}

// Elements 4q .. 4q + 3 of a (q a constant).
fn quad(a: Corrected, q: u32) -> vec4<f32> {
  if (BF16) {
    let w = select(a.w0, a.w1, q >= 2u);
    let p = select(w.xy, w.zw, (q & 1u) == 1u);
    return bitcast<vec4<f32>>(vec4<u32>(p.x << 16u, p.x & 0xffff0000u, p.y << 16u, p.y & 0xffff0000u));
  }
  return bitcast<vec4<f32>>(select(select(a.w0, a.w1, q == 1u), select(a.w2, a.w3, q == 3u), q >= 2u));
}

// Component i of the 16 in v0 .. v3, by selects: a run-time index would
// move them to memory.
fn lane16(v0: vec4<u32>, v1: vec4<u32>, v2: vec4<u32>, v3: vec4<u32>, i: u32) -> u32 {
  let half = select(v0, v1, (i & 4u) != 0u);
  let other = select(v2, v3, (i & 4u) != 0u);
  let v = select(half, other, i >= 8u);
  let p = select(v.xy, v.zw, (i & 2u) != 0u);
  return select(p.x, p.y, (i & 1u) != 0u);
}

// a[i] of the thread's 16 values.
fn element(a: Corrected, i: u32) -> f32 {
  if (BF16) {
    let word = lane16(a.w0, a.w1, a.w0, a.w1, i >> 1u);
    return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (i & 1u) == 1u));
  }
  return bitcast<f32>(lane16(a.w0, a.w1, a.w2, a.w3, i));
}

// The gradient bits of the thread's element i (bf16 in the low half), read
// again.
fn elem_bits(sp: Span, i: u32) -> u32 {
  if (BF16) { return (lane_grad(sp.lane, sp.grad + (i >> 1u)) >> ((i & 1u) * 16u)) & 0xffffu; }
  return lane_grad(sp.lane, sp.grad + i);
}

// a of the thread's element i, read again (the radix-digit fallback).
fn elem_a(sp: Span, i: u32) -> f32 {
  let code = (codes[codes_in_base + sp.code + (i >> 3u)] >> ((i & 7u) * 4u)) & 15u;
  return corrected_bits(elem_bits(sp, i), code);
}

// Bits 0..3 set where m is.
fn mask4(m: vec4<bool>) -> u32 {
  let b = select(vec4<u32>(0u), vec4<u32>(1u, 2u, 4u, 8u), m);
  return b.x | b.y | b.z | b.w;
}

// The running minimum and maximum of residuals, from 0 (which every block
// has: its kept entries leave 0). Scalars, each quad folded in by three
// extrema and one more (as many instructions as a vec4 running extremum):
// six values fewer live through the marking, select 0.6 % faster on the
// H200 and the bf16 kernel with lanes 61 registers instead of 63
// (bench/RESULTS.md, round 21).
struct Range {
  lo: f32,
  hi: f32,
}

// Marks the candidates (|a| >= floor) of four elements at bits 4q .. of the
// returned mask and folds the others into the residual's range; float
// compares and extrema, one instruction each. A device that flushes
// subnormals (the H200) flushes a = g + e too, so no a is subnormal there,
// and a subnormal floor compares as 0: the candidates are then a superset of
// the keys >= floor's, which is all the steps below need.
fn mark4(range: ptr<function, Range>, a: vec4<f32>, q: u32, floor: f32) -> u32 {
  let cand = abs(a) >= vec4<f32>(floor);
  let r = select(a, vec4<f32>(0.0), cand);
  (*range).lo = min((*range).lo, min(min(r.x, r.y), min(r.z, r.w)));
  (*range).hi = max((*range).hi, max(max(r.x, r.y), max(r.z, r.w)));
  return mask4(cand) << (4u * q);
}

// The thread's candidates (bit i: element i, a valid one with |a| >= floor),
// the others folded into `range`.
fn mark_span(range: ptr<function, Range>, a: Corrected, valid: u32, floor: f32) -> u32 {
  return valid & (mark4(range, quad(a, 0u), 0u, floor) | mark4(range, quad(a, 1u), 1u, floor) |
    mark4(range, quad(a, 2u), 2u, floor) | mark4(range, quad(a, 3u), 3u, floor));
}

// Lists the keys of the thread's candidates `cand` in cand_keys, at
// slots counted by cand_n from `base` (cand_n's value before this listing),
// while they fit; returns cand_n after the workgroup's listing, in every
// thread. Called in uniform control flow.
fn list_candidates(a: Corrected, cand: u32, base: u32) -> u32 {
  let n_cand = countOneBits(cand);
  var slot = 0u;
  if (n_cand > 0u) { slot = atomicAdd(&cand_n, n_cand) - base; }
  var cm = cand;
  while (cm != 0u && slot < CAND_CAP) {
    let i = firstTrailingBit(cm);
    cm &= cm - 1u;
    cand_keys[slot >> 2u][slot & 3u] = listed_key(topk_key(element(a, i)));
    slot++;
  }
  return workgroupUniformLoad(&cand_n);
}

// The largest key of the thread's n elements.
fn thread_max_key(a: Corrected, n: u32) -> u32 {
  if (n < VPT) {
    var kmax = 0u;
    for (var i = 0u; i < n; i++) { kmax = max(kmax, topk_key(element(a, i))); }
    return kmax;
  }
  let m4 = max(max(abs(quad(a, 0u)), abs(quad(a, 1u))), max(abs(quad(a, 2u)), abs(quad(a, 3u))));
  return topk_key(max(max(m4.x, m4.y), max(m4.z, m4.w)));
}

// The rank whose key a block keeps as its next step's hint: enough above k
// that the next step's values, a little different, still mark at least k
// (at k = 41, 69: the count at a fixed floor varies by about its square
// root), and well inside the candidate list.
fn hint_rank(k: u32) -> u32 {
  return min(k + k / 2u + 8u, CAND_CAP - 32u);
}

// A top-k key as the candidate list holds it: |a|'s f32 bits one octave
// up, a normal float (|a| < 2^61 on any step that is applied) that compares
// as the keys do, also where the device flushes subnormals (a key of 0 as
// is would be a subnormal), and above the list's empty entries (0).
fn listed_key(key: u32) -> u32 { return key_bits(key) + 0x00800000u; }

// The top-k key of a listed one.
fn unlisted_key(listed: u32) -> u32 {
  let bits = listed - 0x00800000u;
  if (BF16) { return bits >> 16u; }
  return bits;
}

// 1 for each listed key at or above edge, else 0 (as WGSL's step(), which
// the kernel's `step` binding hides).
fn at_or_above(listed: vec4<u32>, edge: vec4<f32>) -> vec4<f32> {
  return select(vec4<f32>(0.0), vec4<f32>(1.0), bitcast<vec4<f32>>(listed) >= edge);
}

// The f32 bits of the |a| of a top-k key.
fn key_bits(key: u32) -> u32 {
  if (BF16) { return key << 16u; }
  return key;
}

// A hint a little below the |a| of f32 bits h (6 to 12 % lower), 0 near 0.
fn lower_hint(h: u32) -> u32 {
  return select(0u, h - (1u << 20u), h > (1u << 20u));
}

// Codes of four residuals at nibbles 4q' (q' = q mod 2) of a word, by
// multiplies; the largest margin (see quantize_fast4) goes to `margin`, a
// scalar for the same reason as Range's.
fn codes4(margin: ptr<function, f32>, a: vec4<f32>, q: u32, qz: Quantizer) -> u32 {
  let fast = quantize_fast4(a, qz);
  let m = fast.margin;
  *margin = max(*margin, max(max(m.x, m.y), max(m.z, m.w)));
  let c = fast.codes << (vec4<u32>(0u, 4u, 8u, 12u) + 16u * (q & 1u));
  return c.x | c.y | c.z | c.w;
}

// Bits 4q .. of the four lanes whose fast code is undecided.
fn undecided4(a: vec4<f32>, q: u32, qz: Quantizer) -> u32 {
  return mask4(quantize_fast4(a, qz).margin >= vec4<f32>(FAST_LIMIT)) << (4u * q);
}

// Steps 1-5 for the block in `place`, and look_ahead(next) once every
// thread has read this block's place and etab. Every workgroup variable a
// block writes was last read, in the previous block, before a barrier that
// all threads passed: the candidate list, its count and T are cleared after
// their last reads, so no barrier opens a block.
fn select_block(next: u32, tid: u32) {
  let blk = place;
  let q = blk.stats;

  // ---- Load: 16 consecutive gradients and two code words per thread ---------
  let j0 = tid * VPT;
  var grad = blk.grad + j0;
  var words = 16u;
  if (BF16) {
    grad >>= 1u; // even: see MicroAdam
    words = 8u;
  }
  let sp = Span(
    j0,
    select(0u, min(VPT, blk.n - j0), j0 < blk.n),
    grad,
    blk.code + j0 / 8u, // see MicroAdam: word-aligned
    (grad & 3u) == 0u && grad + words <= 4u * lane_grad4_len(blk.lane),
    blk.lane,
  );
  // Elements past n (a thread at the end of a tensor) are masked out below,
  // or, in the per-element maxima, recomputed without them.
  let valid = select(0xffffu, (1u << sp.n) - 1u, sp.n < VPT);
  let d = load_span(sp);
  // The block's hint, read by every thread while its loads are in flight
  // (read from `place`, the f32 lanes kernel took 64 registers on the H200,
  // where it takes 48 this way: bench/RESULTS.md, round 25).
  let hint = atomicLoad(&work[table.hint_off + q]);
  let a = corrected_span(d);
  // Whether some gradient is NaN or too large, by float operations: the
  // float sum of |g| is below the limit only when none is, so the exact
  // check by bits runs only when it is not, and for a thread at the end of a
  // tensor. Its gradient bits are read again, so that the loaded words are
  // dead after the sum (held, they cost the f32 kernel 15 registers and a
  // resident workgroup per SM).
  let s4 = (abs(grad_values(d.g0)) + abs(grad_values(d.g1))) +
    (abs(grad_values(d.g2)) + abs(grad_values(d.g3)));
  let limit = bitcast<f32>((127u + GRADIENT_LIMIT_LOG2) << 23u);
  if (!((s4.x + s4.y) + (s4.z + s4.w) < limit) || sp.n < VPT) {
    let gm = select(0x7fffffffu, 0x7fffu, BF16);
    var gmax = 0u; // the largest |g| bits: too large (or NaN) exactly when one is
    for (var i = 0u; i < sp.n; i++) {
      gmax = max(gmax, elem_bits(sp, i) & gm);
    }
    let bad = select(f32_bits_too_large(gmax), bf16_bits_too_large(gmax), BF16);
    if (bad) { atomicMin(&flags[0], blk.tensor); }
  }

  // ---- Candidates --------------------------------------------------------------
  // floor = an |a| that at least blk.k elements reach (so T >= its key): only
  // keys at or above it are candidates, and the steps below visit only
  // those. The others' residual is a: their range. The candidates' keys go
  // to workgroup memory (list_candidates). First the block's hint, the |a|
  // that hint_rank(k) elements reached at the step before: a block's values
  // change little from one step to the next, so it usually marks between k
  // and CAND_CAP, and T then comes from that list with no bound computed.
  // Otherwise (the first step, a hint from other data) the bound from the
  // subgroups' thread maxima, and the candidates marked again.
  var floor = bitcast<f32>(hint);
  var range = Range(0.0, 0.0);
  var cand = mark_span(&range, a, valid, floor); // bit i: element i is a candidate
  var n_all = list_candidates(a, cand, 0u);
  if (n_all < blk.k || n_all > CAND_CAP) {
    // Every thread has read n_all: the list is free. Too few marked (the
    // hint above T) leaves entries that the marking below, a superset,
    // overwrites; too many (CAND_CAP of them listed) may leave more than
    // it does.
    if (n_all > CAND_CAP && tid < CAND_CAP / 4u) { cand_keys[tid] = vec4<u32>(0u); }
    // The bound goes by |a|'s f32 bits (a bf16 key << 16): wg_kth_bound_part
    // clears its result's low bits (the subgroup lane's), which a bf16 key
    // does not have there. (Cleared from the key itself, they made the bf16
    // kernel 20 % slower on the H200, its bound far below T.) Its maximum
    // takes the one-barrier `_varying` reduction, as the row's scan and the
    // residual's range below: no barrier depends on their results (six
    // barriers and three serial thread-0 steps fewer per block than the
    // uniform ones: the f32 kernel 3 % faster on the H200, bench/RESULTS.md,
    // round 13); its barrier also orders the clearing above before the
    // listing below.
    let kmax = thread_max_key(a, sp.n);
    let bound = wg_kth_bound_part(tid, select(kmax, kmax << 16u, BF16), blk.k);
    let bound_floor = bitcast<f32>(~wg_max2_varying(tid, vec2<u32>(~bound, 0u)).x);
    // Too many marked: either floor is a lower bound on T, take the higher.
    floor = select(bound_floor, max(floor, bound_floor), n_all > CAND_CAP);
    range = Range(0.0, 0.0);
    cand = mark_span(&range, a, valid, floor);
    n_all = list_candidates(a, cand, n_all) - n_all;
  }
  // As order-preserving keys (the minimum complemented) for the maxima
  // below. A -0 and a +0 give different keys, and either may be the
  // minimum's: stats_from_scratch stores both as +0.
  var rmin = ~ordered_enc(range.lo);
  var rmax = ordered_enc(range.hi);
  if (sp.n < VPT) {
    rmin = ~ordered_enc(0.0);
    rmax = ordered_enc(0.0);
    for (var i = 0u; i < sp.n; i++) {
      if (((cand >> i) & 1u) == 0u) {
        let o = ordered_enc(element(a, i));
        rmin = max(rmin, ~o);
        rmax = max(rmax, o);
      }
    }
  }

  // ---- The k-th largest key T --------------------------------------------------
  // When the candidates fit the list, every candidate counts the keys at or
  // above its own, and T is the largest key that at least k reach: one pass,
  // one barrier, no digit passes; the largest key that hint_rank(k) reach is
  // the next step's hint. Otherwise radix digits over the candidates find T.
  var threshold: u32;
  var next_hint = 0u; // thread 0's
  if (n_all <= CAND_CAP) {
    // Every thread has read etab and place: the next block's go there now,
    // by threads that seldom hold a candidate.
    look_ahead_last(next, tid);
    if (tid < n_all) {
      let kt = cand_keys[tid >> 2u][tid & 3u];
      // Keys at or above kt, counted by float compares and adds: the
      // select kernels 0.5 % faster on the H200 than by integer
      // subtractions and shifts, which it issues at half the rate
      // (bench/RESULTS.md, round 26).
      let edge = vec4<f32>(bitcast<f32>(kt));
      var ge4 = vec4<f32>(0.0);
      // Two groups of four per round (the list is 0 past its end).
      for (var j = 0u; j < (n_all + 3u) / 4u; j += 2u) {
        ge4 += at_or_above(cand_keys[j], edge) + at_or_above(cand_keys[j + 1u], edge);
      }
      let ge = u32((ge4.x + ge4.y) + (ge4.z + ge4.w));
      if (ge >= blk.k) { atomicMax(&t_key, kt); }
      if (ge >= hint_rank(blk.k)) { atomicMax(&cand_n, 0x80000000u | unlisted_key(kt)); }
    }
    workgroupBarrier();
    threshold = unlisted_key(atomicLoad(&t_key));
    if (tid == 0u) {
      // Fewer than hint_rank(k) listed: a floor a little lower.
      let h = atomicLoad(&cand_n);
      next_hint = select(lower_hint(bitcast<u32>(floor)), key_bits(h & 0x7fffffffu), h >= 0x80000000u);
    }
  } else {
    threshold = threshold_by_digits(sp, cand, blk.k, tid);
    look_ahead_last(next, tid);
    next_hint = lower_hint(key_bits(threshold));
  }
  // The candidate list was last read before the barrier above: cleared for
  // the next block, which the barriers below order it before.
  if (tid < CAND_CAP / 4u) { cand_keys[tid] = vec4<u32>(0u); }
  if (tid == 0u) {
    atomicStore(&cand_n, 0u);
    atomicStore(&work[table.hint_off + q], next_hint);
  }

  // ---- This step's row ---------------------------------------------------------
  // The row holds the entries above T in index order, then the first entries
  // at T in index order up to k; a thread's elements are consecutive, so one
  // scan of per-thread counts places them.
  var counts = 0u; // above T | at T << 16
  var cm = cand;
  while (cm != 0u) {
    let i = firstTrailingBit(cm);
    cm &= cm - 1u;
    let key = topk_key(element(a, i));
    if (key > threshold) {
      counts += 1u;
    } else if (key == threshold) {
      counts += 0x10000u;
    }
  }
  let sc = wg_scan_varying(tid, counts);
  // Every thread read t_key before the scan's barrier.
  if (tid == 0u) { atomicStore(&t_key, 0u); }
  let greater = sc.y & 0xffffu;
  let ties = blk.k - greater;
  var next_g = sc.x & 0xffffu;
  var next_t = sc.x >> 16u;
  // The candidates again: kept entries go to the row and leave a residual
  // of 0, the others leave a.
  var kept = 0u; // bit i: element i is in the row
  cm = cand;
  while (cm != 0u) {
    let i = firstTrailingBit(cm);
    cm &= cm - 1u;
    var ai = element(a, i);
    let key = topk_key(ai);
    var keep = false;
    var pos = 0u;
    if (key > threshold) {
      keep = true;
      pos = next_g;
      next_g++;
    } else if (key == threshold) {
      keep = next_t < ties;
      pos = greater + next_t;
      next_t++;
    }
    if (keep) {
      atomicStore(&work[blk.row + pos], window_entry(sp.j0 + i, ai));
      kept |= 1u << i;
      ai = 0.0;
    }
    let o = ordered_enc(ai);
    rmin = max(rmin, ~o);
    rmax = max(rmax, o);
  }

  // ---- EF statistics of the residual, then its codes -------------------------
  // The first thread alone turns the range into the quantizer, which the
  // others read after one more barrier: in every thread, its exact
  // division (ef_unit) and the statistics took about 100 instructions per
  // thread and block (bench/RESULTS.md, round 15).
  let keys = wg_max2_first(tid, vec2<u32>(rmin, rmax));
  if (tid == 0u) {
    atomicStore(&work[2u * q], keys.x);
    atomicStore(&work[2u * q + 1u], keys.y);
    let st = stats_from_scratch(keys.x, keys.y);
    let z = ef_quantizer(bf16_value(st), bf16_value(st >> 16u));
    block_quantizer = z;
    zero_code = quantize(0.0, z);
  }
  workgroupBarrier();
  let qz = block_quantizer;
  var out0 = 0u;
  var out1 = 0u;
  if (qz.u != 0.0) {
    // Every element's code by multiplies, kept ones too (the clamp keeps
    // theirs in 0..15), then the exact codes of the thread's elements in
    // the rare thread where a margin says a multiply may not decide; a
    // running maximum of the margins instead of a mask of undecided lanes,
    // and the kept entries' codes set afterwards instead of their residuals
    // zeroed before: about 8 instructions an element instead of 20.
    var margin = select(1.0, 0.0, qz.fast); // not fast: all exactly
    out0 = codes4(&margin, quad(a, 0u), 0u, qz) | codes4(&margin, quad(a, 1u), 1u, qz);
    out1 = codes4(&margin, quad(a, 2u), 2u, qz) | codes4(&margin, quad(a, 3u), 3u, qz);
    if (margin >= FAST_LIMIT) {
      if (BF16) {
        // bf16 residuals and statistics lie on a coarse grid, so (as the
        // timing suggests) undecided ones are far more common than in f32:
        // only the lanes the multiplies leave undecided (all without a fast
        // path; kept ones are set below) take the exact division (the
        // thread's 16 made the bf16 kernel 12 % slower on the H200,
        // bench/RESULTS.md, round 16). The division, not quantize_undecided's
        // fma: that took the kernel from 48 to at least 53 registers and
        // made it 6 % slower there (round 18).
        var slow = valid & ~kept;
        if (qz.fast) {
          slow &= undecided4(quad(a, 0u), 0u, qz) | undecided4(quad(a, 1u), 1u, qz) |
            undecided4(quad(a, 2u), 2u, qz) | undecided4(quad(a, 3u), 3u, qz);
        }
        while (slow != 0u) {
          let i = firstTrailingBit(slow);
          slow &= slow - 1u;
          let nib = (i & 7u) * 4u;
          let code = quantize_exact(element(a, i), qz) << nib;
          if (i < 8u) {
            out0 = (out0 & ~(15u << nib)) | code;
          } else {
            out1 = (out1 & ~(15u << nib)) | code;
          }
        }
      } else {
        // f32: rare, and the thread's 16 again kept the f32 kernel at 48
        // registers, where the lane mask took 64 (round 16).
        out0 = 0u;
        out1 = 0u;
        for (var i = 0u; i < sp.n; i++) {
          let code = quantize(element(a, i), qz) << ((i & 7u) * 4u);
          if (i < 8u) {
            out0 |= code;
          } else {
            out1 |= code;
          }
        }
      }
    }
    // Kept entries leave a residual of 0.
    let zc = zero_code;
    var km = kept;
    while (km != 0u) {
      let i = firstTrailingBit(km);
      km &= km - 1u;
      let nib = (i & 7u) * 4u;
      if (i < 8u) {
        out0 = (out0 & ~(15u << nib)) | (zc << nib);
      } else {
        out1 = (out1 & ~(15u << nib)) | (zc << nib);
      }
    }
    if (sp.n < 8u) { out0 &= (1u << (4u * sp.n)) - 1u; }
    if (sp.n < 16u) { out1 &= select(0u, (1u << (4u * (sp.n - 8u))) - 1u, sp.n > 8u); }
  }
  if (sp.n > 0u) { codes[codes_out_base + sp.code] = out0; }
  if (sp.n > 8u) { codes[codes_out_base + sp.code + 1u] = out1; }
}

// The k-th largest key T of the block from its candidates (the valid
// entries with |a| >= floor, bit i of cand for a[i], and perhaps a few
// below it), when they are too many for the candidate list: 8-bit radix
// digits, until the bin is exactly the rest of the top-k (then T is its
// smallest key) or every bit is decided (T = the bin's key). Called in
// uniform control flow: its barriers depend on uniform counts only.
fn threshold_by_digits(sp: Span, cand: u32, k: u32, tid: u32) -> u32 {
  // The candidates' largest key (the block's) and smallest, exactly.
  var ends = vec2<u32>(0u);
  var left = cand;
  while (left != 0u) {
    let i = firstTrailingBit(left);
    left &= left - 1u;
    let key = topk_key(elem_a(sp, i));
    ends = max(ends, vec2<u32>(key, ~key));
  }
  let wide = wg_max4(tid, vec4<u32>(ends, 0u, 0u));
  let top = wide.x;
  let bottom = min(~wide.y, top); // top when there is no candidate
  var rem = k; // entries still to place at or below the current bin
  // Every candidate key lies in [bottom, top], so all share the leading bits
  // of the two: the radix digits start below them (for a bf16 key, 16 bits,
  // at most two digits). bf16 keys once took octave counts relative to the
  // block maximum first; without them the bf16 kernel fits 48 registers
  // (five resident workgroups per SM instead of four) and its select runs
  // 6 % faster on the H200 (bench/RESULTS.md, round 29).
  var shift = 32u - countLeadingZeros(top ^ bottom);
  // The bin: keys whose bits above `shift` equal prefix's.
  var prefix = top & ~((1u << shift) - 1u);
  var in_bin = 0xffffffffu; // not counted yet
  loop {
    if (in_bin == rem || shift == 0u) { break; }
    let width = min(shift, 8u);
    shift -= width;
    let hi_shift = shift + width;
    var cm = cand;
    while (cm != 0u) {
      let i = firstTrailingBit(cm);
      cm &= cm - 1u;
      let key = topk_key(elem_a(sp, i));
      if ((key >> hi_shift) == (prefix >> hi_shift)) {
        atomicAdd(&hist[(key >> shift) & 255u], 1u);
      }
    }
    workgroupBarrier();
    // Thread t holds digit 255 - t: its exclusive prefix counts larger digits.
    let h = atomicLoad(&hist[255u - tid]);
    let sc = wg_scan(tid, h);
    if (sc.x < rem && sc.x + h >= rem) { pick = vec4<u32>(255u - tid, sc.x, h, 0u); }
    atomicStore(&hist[255u - tid], 0u);
    let chosen = workgroupUniformLoad(&pick);
    prefix |= chosen.x << shift;
    rem -= chosen.y;
    in_bin = chosen.z;
  }
  // T: the smallest key in the bin (the entries above it are larger).
  var bin_low = 0xffffffffu;
  var cm = cand;
  while (cm != 0u) {
    let i = firstTrailingBit(cm);
    cm &= cm - 1u;
    let key = topk_key(elem_a(sp, i));
    if ((key >> shift) == (prefix >> shift)) { bin_low = min(bin_low, key); }
  }
  return ~wg_max4(tid, vec4<u32>(~bin_low, 0u, 0u, 0u)).x;
}
