// MicroAdam spec steps 1-5 for one top-k block that is also one EF block
// (Q = D, the default, or a tensor no larger than either), in one pass: each
// of 256 threads loads 16 consecutive elements of the gradient and their EF
// codes once, and keeps a = g + e in a private array. Then, without reading
// the gradient or the codes again: the non-finite check, the exact k-th
// largest |a| (T), this step's window row (staged: the update kernel commits
// it once the step is known to apply), the residual's min/max, and the
// residual quantized with the new statistics into the other codes half.
// Runs before the prologue.
//
// A walk over the private array costs about as much as the loads, so only
// three walk all 16 elements: the load, the one that marks the candidates,
// and the quantizer. The candidates are the keys at or above a lower bound
// on T taken from the subgroups' thread maxima (wg_kth_bound_part); T and
// the row visit only them. Their keys are copied to workgroup memory, where
// each candidate counts the keys above its own: T comes out of one pass
// with one barrier. When they do not fit (ties in bulk, or no subgroups, so
// no bound), radix digits over the private array find T instead
// (threshold_by_digits).
//
// The compiler decides where the array lives (device memory through the
// cache, or registers, where a run-time index becomes a chain of compares)
// and how many registers the kernel takes, so each change is checked for
// both (bench/vkstats.py, bench/sass.ts) and timed on the H200
// (bench/RESULTS.md, rounds 5 to 8).

@group(0) @binding(0) var<uniform> cfg: Config;
@group(0) @binding(1) var<storage, read> step: Step;
@group(0) @binding(2) var<storage, read> table: SegTable;
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
var<workgroup> hist: array<atomic<u32>, 256>;
// The digit, the count above it, the count in it. w is unused, but a vec3
// here (with one other edit) cost two resident workgroups per SM on the H200
// (bench/RESULTS.md, round 6).
var<workgroup> pick: vec4<u32>;
// The block's candidates (see select_block), their keys + 1 in any order and
// 0 past the last, while they fit; cand_n counts them even when they do not.
const CAND_CAP: u32 = 256u;
var<workgroup> cand_keys: array<vec4<u32>, 64>; // CAND_CAP / 4
var<workgroup> cand_n: atomic<u32>;

// A workgroup walks blocks w, w + grid, ... (the grid is at most FAST_GRID
// workgroups): what a workgroup costs to start (the segment lookup before
// its first loads, the workgroup memory WGSL zeroes) is paid once per
// workgroup, not once per block.
@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) tid: u32,
) {
  wg_init(tid);
  set_code_halves(call_before_prologue());
  let grid = nwg.x * nwg.y;
  for (var w = linear_workgroup(wid, nwg); w < table.total_blocks; w += grid) {
    select_block(w, tid);
  }
}

// Gradient words first .. first + 3, the first `count` of them (the rest 0):
// the path for blocks that 16-byte loads cannot reach. Components are set
// one by one (a run-time index would put the vector in memory).
fn load_words(first: u32, count: u32) -> vec4<u32> {
  var v = vec4<u32>(0u);
  if (count > 0u) { v.x = grads[first]; }
  if (count > 1u) { v.y = grads[first + 1u]; }
  if (count > 2u) { v.z = grads[first + 2u]; }
  if (count > 3u) { v.w = grads[first + 3u]; }
  return v;
}

// f32 gradient words first + 4q .. first + 4q + 3 of the thread's nv
// (0 past them).
fn f32_words(first: u32, q: u32, nv: u32, aligned: bool) -> vec4<u32> {
  if (aligned) { return grads4[(first >> 2u) + q]; }
  return load_words(first + 4u * q, nv - min(4u * q, nv));
}

// What the load phase gathers besides a: a non-finite or too large gradient,
// the largest key.
struct LoadAcc {
  gmax: u32, // the largest |g| bits: too large (or NaN) exactly when one is
  kmax: u32,
}

// a = g + e for element i of the thread (gradient bits, code `sub` of code
// word cw); valid elements (i < nv) count in acc.
fn take(acc: ptr<function, LoadAcc>, bits: u32, cw: u32, sub: u32, i: u32, nv: u32) -> f32 {
  var g: f32;
  if (BF16) { g = bitcast<f32>(bits << 16u); } else { g = bitcast<f32>(bits); }
  // Spec step 1 (add_error); a NaN gradient skips the step, so its a is
  // never used and bf16 rounding needs no NaN case here.
  var a = g + etab[(cw >> (sub * 4u)) & 15u];
  if (BF16) { a = bf16_round_number(a); }
  if (i < nv) {
    (*acc).gmax = max((*acc).gmax, bits & select(0x7fffffffu, 0x7fffu, BF16));
    (*acc).kmax = max((*acc).kmax, topk_key(a));
  }
  return a;
}

// take() for four elements i .. i + 3 (codes sub .. sub + 3 of cw).
fn take4(acc: ptr<function, LoadAcc>, v: vec4<u32>, cw: u32, sub: u32, i: u32, nv: u32) -> vec4<f32> {
  return vec4<f32>(
    take(acc, v.x, cw, sub, i, nv),
    take(acc, v.y, cw, sub + 1u, i + 1u, nv),
    take(acc, v.z, cw, sub + 2u, i + 2u, nv),
    take(acc, v.w, cw, sub + 3u, i + 3u, nv),
  );
}

// Steps 1-5 for block w. Every workgroup variable a block writes was last
// read, in the previous block, before a barrier that all threads passed.
fn select_block(w: u32, tid: u32) {
  let blk = topk_block(w);
  let s = table.segs[blk.seg];
  let q = ef_block(s, blk.start); // the block is one EF block
  if (tid < 16u) {
    let st = stats[q];
    let mn = bf16_value(st);
    etab[tid] = ef_value(tid, mn, ef_unit(mn, bf16_value(st >> 16u)));
  }
  atomicStore(&hist[tid], 0u);
  if (tid < CAND_CAP / 4u) { cand_keys[tid] = vec4<u32>(0u); }
  if (tid == 0u) { atomicStore(&cand_n, 0u); }
  workgroupBarrier();

  // ---- Load: 16 consecutive gradients and codes per thread ----------------
  let j0 = tid * VPT;
  let nv = select(0u, min(VPT, blk.n - j0), j0 < blk.n); // valid elements
  // a = g + e straight from the loaded words: the gradient words are not
  // kept (a private array of them went to memory beside a).
  let cw_first = s.codes_off + (blk.start + j0) / 8u; // see MicroAdam: word-aligned
  var cw0 = 0u;
  var cw1 = 0u;
  if (nv > 0u) { cw0 = codes[codes_in_base + cw_first]; }
  if (nv > 8u) { cw1 = codes[codes_in_base + cw_first + 1u]; }
  var a: array<f32, VPT>;
  var acc = LoadAcc(0u, 0u);
  // The 16 gradients' bits as four vec4s, elements 0-3, 4-7, 8-11, 12-15.
  // Written out by hand: as a loop over the words it stayed a loop on the
  // H200, with each a[4q + j] written through 16 compares and predicated
  // moves and the loads issued one after another.
  var g0: vec4<u32>;
  var g1: vec4<u32>;
  var g2: vec4<u32>;
  var g3: vec4<u32>;
  if (BF16) {
    let first = (s.grad_off + blk.start + j0) >> 1u; // even: see MicroAdam
    let aligned = (first & 3u) == 0u && first + 8u <= 4u * arrayLength(&grads4);
    let words = (nv + 1u) / 2u;
    var w0: vec4<u32>;
    var w1: vec4<u32>;
    if (aligned) {
      w0 = grads4[first >> 2u];
      w1 = grads4[(first >> 2u) + 1u];
    } else {
      w0 = load_words(first, words);
      w1 = load_words(first + 4u, words - min(4u, words));
    }
    // Two bf16 gradients per word, the low half first.
    let halves = vec4<u32>(0u, 16u, 0u, 16u);
    let low = vec4<u32>(0xffffu);
    g0 = (vec4<u32>(w0.xx, w0.yy) >> halves) & low;
    g1 = (vec4<u32>(w0.zz, w0.ww) >> halves) & low;
    g2 = (vec4<u32>(w1.xx, w1.yy) >> halves) & low;
    g3 = (vec4<u32>(w1.zz, w1.ww) >> halves) & low;
  } else {
    let first = s.grad_off + blk.start + j0;
    let aligned = (first & 3u) == 0u && first + 16u <= 4u * arrayLength(&grads4);
    g0 = f32_words(first, 0u, nv, aligned);
    g1 = f32_words(first, 1u, nv, aligned);
    g2 = f32_words(first, 2u, nv, aligned);
    g3 = f32_words(first, 3u, nv, aligned);
  }
  let r0 = take4(&acc, g0, cw0, 0u, 0u, nv);
  let r1 = take4(&acc, g1, cw0, 4u, 4u, nv);
  let r2 = take4(&acc, g2, cw1, 0u, 8u, nv);
  let r3 = take4(&acc, g3, cw1, 4u, 12u, nv);
  a[0] = r0.x; a[1] = r0.y; a[2] = r0.z; a[3] = r0.w;
  a[4] = r1.x; a[5] = r1.y; a[6] = r1.z; a[7] = r1.w;
  a[8] = r2.x; a[9] = r2.y; a[10] = r2.z; a[11] = r2.w;
  a[12] = r3.x; a[13] = r3.y; a[14] = r3.z; a[15] = r3.w;
  let bad = select(f32_bits_too_large(acc.gmax), bf16_bits_too_large(acc.gmax), BF16);
  let kmax = acc.kmax;
  if (bad) { atomicMin(&flags[0], s.tensor); }

  // ---- Candidates ------------------------------------------------------------
  // top = the block's largest key; floor = a key that at least blk.k keys
  // reach (so T >= floor): only keys at or above it are candidates, and the
  // walks below visit only those.
  let tops = wg_max4(tid, vec4<u32>(kmax, ~wg_kth_bound_part(tid, kmax, blk.k), 0u, 0u));
  let top = tops.x;
  let floor_key = ~tops.y;
  var cand = 0u; // bit i: a[i] is a candidate (valid, key >= floor_key)
  // The residual's min/max; the keys below floor_key are never kept.
  var rmin = 0u; // ~ordered(min residual), as the atomics of the general path
  var rmax = 0u;
  // Loops end at nv (<= 16): no per-element test of i < nv.
  for (var i = 0u; i < nv; i++) {
    if (topk_key(a[i]) >= floor_key) {
      cand |= 1u << i;
    } else {
      let o = ordered_enc(a[i]);
      rmin = max(rmin, ~o);
      rmax = max(rmax, o);
    }
  }
  // ---- The k-th largest key T --------------------------------------------------
  // The candidates' keys go to workgroup memory. When they fit (on the
  // benchmark's data a block has about 60 to 100), every candidate counts
  // the keys above and at its own, and T is the key with fewer than k above
  // it and at least k at or above: one pass, one barrier, no digit passes.
  // Otherwise (ties in bulk, e.g. a block of zeros; no subgroups) radix
  // digits over the private array find it.
  let n_cand = countOneBits(cand);
  var slot = 0u;
  if (n_cand > 0u) { slot = atomicAdd(&cand_n, n_cand); }
  var cm = cand;
  while (cm != 0u && slot < CAND_CAP) {
    let i = firstTrailingBit(cm);
    cm &= cm - 1u;
    cand_keys[slot >> 2u][slot & 3u] = topk_key(a[i]) + 1u;
    slot++;
  }
  let n_all = workgroupUniformLoad(&cand_n);
  var threshold: u32;
  if (n_all <= CAND_CAP) {
    if (tid < n_all) {
      let kt = cand_keys[tid >> 2u][tid & 3u];
      let ktv = vec4<u32>(kt);
      var gt4 = vec4<u32>(0u); // keys above kt
      var ge4 = vec4<u32>(0u); // keys at or above kt
      for (var j = 0u; j < (n_all + 3u) / 4u; j++) {
        let v = cand_keys[j];
        gt4 += select(vec4<u32>(0u), vec4<u32>(1u), v > ktv);
        ge4 += select(vec4<u32>(0u), vec4<u32>(1u), v >= ktv);
      }
      let gt = gt4.x + gt4.y + gt4.z + gt4.w;
      let ge = ge4.x + ge4.y + ge4.z + ge4.w;
      // Every candidate holding T writes the same value.
      if (gt < blk.k && ge >= blk.k) { pick.x = kt - 1u; }
    }
    threshold = workgroupUniformLoad(&pick).x;
  } else {
    threshold = threshold_by_digits(&a, cand, top, floor_key, blk.k, tid);
  }
  // ---- This step's row ---------------------------------------------------------
  // One pass over the candidates: a mask of the entries at or above T, how
  // many are above and at T, and the residual's min/max over the others
  // (never kept).
  var at_or_above = 0u; // bit i: key(a[i]) >= T
  var counts = 0u; // above T | at T << 16
  cm = cand;
  while (cm != 0u) {
    let i = firstTrailingBit(cm);
    cm &= cm - 1u;
    let key = topk_key(a[i]);
    if (key >= threshold) {
      at_or_above |= 1u << i;
      counts += select(0x10000u, 1u, key > threshold);
    } else {
      let o = ordered_enc(a[i]);
      rmin = max(rmin, ~o);
      rmax = max(rmax, o);
    }
  }
  let sc = wg_scan(tid, counts);
  let greater = sc.y & 0xffffu;
  let ties = blk.k - greater;
  var next_g = sc.x & 0xffffu;
  var next_t = sc.x >> 16u;
  // Only the masked entries, in index order: a[i] becomes the residual, kept
  // entries are zeroed.
  while (at_or_above != 0u) {
    let i = firstTrailingBit(at_or_above);
    at_or_above &= at_or_above - 1u;
    var keep = true;
    var pos = next_g;
    if (topk_key(a[i]) > threshold) {
      next_g++;
    } else {
      keep = next_t < ties;
      pos = greater + next_t;
      next_t++;
    }
    if (keep) {
      atomicStore(&work[blk.row + pos], window_entry(j0 + i, a[i]));
      a[i] = 0.0;
    }
    let o = ordered_enc(a[i]);
    rmin = max(rmin, ~o);
    rmax = max(rmax, o);
  }

  // ---- EF statistics of the residual, then its codes -------------------------
  let keys = wg_max4(tid, vec4<u32>(rmin, rmax, 0u, 0u));
  if (tid == 0u) {
    atomicStore(&work[2u * q], keys.x);
    atomicStore(&work[2u * q + 1u], keys.y);
  }
  let st = stats_from_scratch(keys.x, keys.y);
  let mn = bf16_value(st);
  let u = ef_unit(mn, bf16_value(st >> 16u));
  let qz = ef_quantizer(mn, u);
  // One loop per code word: no per-element choice of the word.
  var out0 = 0u;
  for (var i = 0u; i < min(nv, 8u); i++) { out0 |= quantize(a[i], qz) << (4u * i); }
  var out1 = 0u;
  for (var i = 8u; i < nv; i++) { out1 |= quantize(a[i], qz) << (4u * (i - 8u)); }
  if (nv > 0u) { codes[codes_out_base + cw_first] = out0; }
  if (nv > 8u) { codes[codes_out_base + cw_first + 1u] = out1; }
}

// The k-th largest key T of the block from its candidates (the valid
// entries with key >= floor_key, bit i of cand for a[i]), when they are too
// many for the candidate list: 8-bit radix digits (for bf16 after octave
// counts), until the bin is exactly the rest of the top-k (then T is its
// smallest key) or every bit is decided (T = the bin's key). Called in
// uniform control flow: its barriers depend on uniform counts only.
fn threshold_by_digits(
  a: ptr<function, array<f32, VPT>>,
  cand: u32,
  top: u32,
  floor_key: u32,
  k: u32,
  tid: u32,
) -> u32 {
  var rem = k; // entries still to place at or below the current bin
  var shift: u32;
  var prefix: u32; // the bin: keys whose bits above `shift` equal prefix's
  var in_bin = 0xffffffffu; // not counted yet
  if (BF16) {
    // bf16: octave counts relative to the block maximum first (with the
    // f32 path's start, the compiler's allocation made the bf16 kernel
    // 38 % slower on the H200: bench/RESULTS.md, round 7).
    let exp_shift = 7u;
    shift = exp_shift;
    var eb = top >> exp_shift; // highest exponent of the current window of 8
    // Octaves: how many keys have exponent eb, eb - 1, ..., eb - 7 (packed
    // counters, no atomics), until the octave holding the k-th largest.
    loop {
      var lo = 0u;
      var hi = 0u;
      var cm = cand;
      while (cm != 0u) {
        let i = firstTrailingBit(cm);
        cm &= cm - 1u;
        let e = topk_key((*a)[i]) >> exp_shift;
        if (e <= eb && eb - e < 8u) {
          let d = eb - e;
          let inc = 1u << ((d & 3u) * 8u);
          if (d < 4u) { lo += inc; } else { hi += inc; }
        }
      }
      let c = wg_sum4(tid, vec4<u32>(
        lo & 0x00ff00ffu,
        (lo >> 8u) & 0x00ff00ffu,
        hi & 0x00ff00ffu,
        (hi >> 8u) & 0x00ff00ffu,
      ));
      // Octave d's count: bins 0, 2 in c.x; 1, 3 in c.y; 4, 6 in c.z; 5, 7 in c.w.
      var cum = 0u;
      var found = false;
      for (var d = 0u; d < 8u; d++) {
        let word = select(select(c.w, c.z, (d & 1u) == 0u), select(c.y, c.x, (d & 1u) == 0u), d < 4u);
        let count = (word >> (16u * ((d >> 1u) & 1u))) & 0xffffu;
        if (!found && d <= eb) {
          if (cum + count >= rem) {
            found = true;
            prefix = (eb - d) << exp_shift;
            in_bin = count;
            rem -= cum;
          } else {
            cum += count;
          }
        }
      }
      if (found || eb < 8u) { break; }
      rem -= cum;
      eb -= 8u;
    }
  } else {
    // Every candidate key lies in [floor_key, top], so all share the
    // leading bits of the two: the radix digits start below them.
    shift = 32u - countLeadingZeros(top ^ floor_key);
    prefix = top & ~((1u << shift) - 1u);
  }
  loop {
    if (in_bin == rem || shift == 0u) { break; }
    let width = min(shift, 8u);
    shift -= width;
    let hi_shift = shift + width;
    var cm = cand;
    while (cm != 0u) {
      let i = firstTrailingBit(cm);
      cm &= cm - 1u;
      let key = topk_key((*a)[i]);
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
    let key = topk_key((*a)[i]);
    if ((key >> shift) == (prefix >> shift)) { bin_low = min(bin_low, key); }
  }
  return ~wg_max4(tid, vec4<u32>(~bin_low, 0u, 0u, 0u)).x;
}
