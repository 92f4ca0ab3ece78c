// MicroAdam spec steps 3 and 5-9 on the general path, for one tile of 1024
// coordinates: rebuild the moments from the window (slot order, one row at a
// time in workgroup memory; this step's row comes from the staged row in
// `work`), quantize the residual with this step's EF statistics into the
// other codes half, update the parameters, and commit the staged rows of the
// blocks that start in the tile. A skipped step only carries the codes over.

@group(0) @binding(0) var<uniform> cfg: Config;
@group(0) @binding(1) var<storage, read> step: Step;
@group(0) @binding(2) var<storage, read> table: SegTable;
@group(0) @binding(3) var<storage, read_write> params: array<u32>;
@group(0) @binding(4) var<storage, read> grads: array<u32>;
@group(0) @binding(5) var<storage, read_write> codes: array<u32>;
@group(0) @binding(6) var<storage, read> stats: array<u32>;
// EF statistics keys of this step (2 words per EF block), then the staged rows.
@group(0) @binding(7) var<storage, read> work: array<u32>;
@group(0) @binding(8) var<storage, read_write> window: array<u32>;

struct TileInfo {
  skip: u32,
  seg: u32,
  lo: u32,   // segment-local coordinates [lo, hi)
  hi: u32,
  b0: u32,   // first and last top-k block overlapping the tile
  b1: u32,
  rows: u32, // min(t, m)
}

var<workgroup> info: TileInfo;
var<workgroup> acc_m: array<f32, TILE>;
var<workgroup> acc_s: array<f32, TILE>;
var<workgroup> kept: array<atomic<u32>, 32>; // selected this step, one bit per coordinate
var<workgroup> code_words: array<atomic<u32>, 128>; // the tile's new EF codes

// Per-thread cache of the EF block last seen (threads walk the tile with a
// stride of 128, so consecutive elements usually share an EF block).
var<private> cache_q: u32 = 0xffffffffu;
var<private> old_mn: f32;   // stored stats before this step: dequantize
var<private> old_unit: f32;
var<private> new_qz: Quantizer; // stats of this step: quantize

// Steps 3, 5, 6, 8, 9 for tile coordinate l with parameter p: records the
// new EF code in code_words and returns the new parameter.
fn update_one(s: Seg, lo: u32, l: u32, p_in: f32, h: GroupHyper) -> f32 {
  let c = lo + l;
  let q = ef_block(s, c);
  if (q != cache_q) {
    cache_q = q;
    let st = stats[q];
    old_mn = bf16_value(st);
    old_unit = ef_unit(old_mn, bf16_value(st >> 16u));
    let nst = stats_from_scratch(work[2u * q], work[2u * q + 1u]);
    let new_mn = bf16_value(nst);
    new_qz = ef_quantizer(new_mn, bf16_value(nst >> 16u));
  }
  let a = add_error(load_grad(s.grad_off + c), ef_value(load_code(s, c), old_mn, old_unit));
  let is_kept = ((atomicLoad(&kept[l >> 5u]) >> (l & 31u)) & 1u) == 1u;
  let code = quantize(select(a, 0.0, is_kept), new_qz);
  atomicOr(&code_words[l >> 3u], code << ((l & 7u) * 4u));

  var p = p_in;
  if (h.wd > 0.0) {
    p = p * h.decay;
    if (BF16) { p = bf16_round(p); }
  }
  let u = (step.c1 * acc_m[l]) / (sqrt(step.c2 * acc_s[l]) + cfg.eps);
  if (BF16) {
    // The authors' kernel fuses this multiply-add; u is a bf16, so the exact
    // fma_short applies.
    return fma_short(h.neg_lr, bf16_round(u), p);
  }
  return fma(h.neg_lr, u, p);
}

@compute @workgroup_size(128)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) tid: u32,
) {
  let w = linear_workgroup(wid, nwg);
  if (tid == 0u) {
    var ti: TileInfo;
    ti.skip = select(0u, 1u, w >= table.total_tiles);
    if (ti.skip == 0u) {
      ti.seg = find_segment(w, true);
      let s = table.segs[ti.seg];
      ti.lo = (w - s.first_tile) * TILE;
      ti.hi = min(ti.lo + TILE, s.len);
      ti.b0 = ti.lo / s.block;
      ti.b1 = (ti.hi - 1u) / s.block;
      ti.rows = min(step.t, cfg.window);
    }
    info = ti;
  }
  for (var i = tid; i < TILE; i += TILE_THREADS) {
    acc_m[i] = 0.0;
    acc_s[i] = 0.0;
  }
  if (tid < 32u) { atomicStore(&kept[tid], 0u); }
  atomicStore(&code_words[tid], 0u);
  let tile = workgroupUniformLoad(&info);
  if (tile.skip != 0u) { return; }
  let s = table.segs[tile.seg];
  set_code_halves(call_after_prologue());
  if (step.skip != 0u) {
    // The output half must hold this tile's codes whatever happens.
    let w0 = s.codes_off + tile.lo / 8u;
    let words = (tile.hi - tile.lo + 7u) / 8u;
    for (var i = tid; i < words; i += TILE_THREADS) {
      codes[codes_out_base + w0 + i] = codes[codes_in_base + w0 + i];
    }
    return;
  }
  // Commit the staged rows of the blocks that start in this tile.
  for (var b = (tile.lo + s.block - 1u) / s.block; b * s.block < tile.hi; b++) {
    let kb = select(s.k_tail, s.k_block, s.len - b * s.block >= s.block);
    let dst = s.window_off + b * cfg.window * s.k_block + step.slot * kb;
    for (var e = tid; e < kb; e += TILE_THREADS) {
      window[dst + e] = work[s.stage_off + b * s.k_block + e];
    }
  }

  // Step 7: M and S from the window rows in slot order (fma per entry).
  let full_entries = (tile.b1 - tile.b0) * s.k_block;
  let last_len = min(s.block, s.len - tile.b1 * s.block);
  let last_k = select(s.k_tail, s.k_block, last_len == s.block);
  for (var i = 0u; i < tile.rows; i++) {
    let age = (step.t - 1u - i) % cfg.window;
    let b1p = pow_f32(cfg.beta1, age);
    let b2p = pow_f32(cfg.beta2, age);
    for (var f = tid; f < full_entries + last_k; f += TILE_THREADS) {
      var b = tile.b1;
      var e = f - full_entries;
      if (f < full_entries) {
        b = tile.b0 + f / s.k_block;
        e = f % s.k_block;
      }
      let kb = select(s.k_block, last_k, b == tile.b1);
      var entry: u32;
      if (i == step.slot) {
        entry = work[s.stage_off + b * s.k_block + e];
      } else {
        entry = window[s.window_off + b * cfg.window * s.k_block + i * kb + e];
      }
      let c = b * s.block + (entry & 0xffffu);
      if (c >= tile.lo && c < tile.hi) {
        let v = bf16_value(entry >> 16u);
        let l = c - tile.lo;
        acc_m[l] = fma_short(b1p, v, acc_m[l]);
        acc_s[l] = fma_short(b2p * v, v, acc_s[l]);
        if (i == step.slot) { atomicOr(&kept[l >> 5u], 1u << (l & 31u)); }
      }
    }
    workgroupBarrier();
  }

  // Coalesced: f32 threads take elements tid, tid + 128, …; bf16 threads
  // take whole words (element pairs) the same way.
  let h = step.param_groups[s.param_group];
  if (BF16) {
    for (var l0 = 2u * tid; tile.lo + l0 < tile.hi; l0 += 2u * TILE_THREADS) {
      let wi = (s.param_off + tile.lo + l0) >> 1u; // param_off is even
      var word = params[wi];
      for (var half = 0u; half < 2u; half++) {
        if (tile.lo + l0 + half >= tile.hi) { break; }
        let shift = half * 16u;
        let p = update_one(s, tile.lo, l0 + half, bf16_value(word >> shift), h);
        let bits = bitcast<u32>(bf16_round(p)) >> 16u;
        word = (word & ~(0xffffu << shift)) | (bits << shift);
      }
      params[wi] = word;
    }
  } else {
    for (var l = tid; tile.lo + l < tile.hi; l += TILE_THREADS) {
      let pi = s.param_off + tile.lo + l;
      params[pi] = bitcast<u32>(update_one(s, tile.lo, l, bitcast<f32>(params[pi]), h));
    }
  }
  workgroupBarrier();

  // One code word per thread (8 coordinates); a tensor's last word keeps the
  // bits past its end.
  let first = tile.lo + 8u * tid;
  if (first < tile.hi) {
    let count = min(8u, tile.hi - first);
    let word = atomicLoad(&code_words[tid]);
    let wi = s.codes_off + first / 8u;
    if (count == 8u) {
      codes[codes_out_base + wi] = word;
    } else {
      let mask = (1u << (count * 4u)) - 1u;
      codes[codes_out_base + wi] = (codes[codes_in_base + wi] & ~mask) | word;
    }
  }
}
