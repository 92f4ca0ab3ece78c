// MicroAdam spec steps 3 and 5-9 for one tile of 1024 coordinates: rebuild
// the moments from the window (slot order, one row at a time in workgroup
// memory), quantize the residual with this step's EF statistics, and update
// the parameters.

@group(0) @binding(0) var<uniform> cfg: Config;
@group(0) @binding(1) var<storage, read> step: Step;
@group(0) @binding(2) var<storage, read> table: SegTable;
@group(0) @binding(3) var<storage, read_write> params: array<u32>;
@group(0) @binding(4) var<storage, read> grads: array<u32>;
@group(0) @binding(5) var<storage, read_write> codes: array<u32>;
@group(0) @binding(6) var<storage, read> stats: array<u32>;
@group(0) @binding(7) var<storage, read> scratch: array<u32>;
@group(0) @binding(8) var<storage, read> window: array<u32>;

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

fn load_param(i: u32) -> f32 {
  if (BF16) { return bf16_value(params[i >> 1u] >> ((i & 1u) * 16u)); }
  return bitcast<f32>(params[i]);
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
    ti.skip = select(0u, 1u, step.skip != 0u || w >= table.total_tiles);
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
  for (var i = 0u; i < PER_THREAD; i++) {
    acc_m[tid * PER_THREAD + i] = 0.0;
    acc_s[tid * PER_THREAD + i] = 0.0;
  }
  if (tid < 32u) { atomicStore(&kept[tid], 0u); }
  let tile = workgroupUniformLoad(&info);
  if (tile.skip != 0u) { return; }
  let s = table.segs[tile.seg];

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
      let entry = window[s.window_off + b * cfg.window * s.k_block + i * kb + e];
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

  // Steps 3, 5, 6, 8, 9 for this thread's 8 coordinates (one word of codes).
  let h = step.groups[s.group];
  let c1 = step.c1;
  let c2 = step.c2;
  let first = tile.lo + tid * PER_THREAD;
  if (first >= tile.hi) { return; }
  let count = min(PER_THREAD, tile.hi - first);
  var word = 0u;
  var last_q = 0xffffffffu;
  var mn = 0.0;
  var mx = 0.0;
  var p_word = 0u;
  for (var i = 0u; i < count; i++) {
    let c = first + i;
    let l = c - tile.lo;
    let a = corrected(s, c);
    let is_kept = ((atomicLoad(&kept[l >> 5u]) >> (l & 31u)) & 1u) == 1u;
    let r = select(a, 0.0, is_kept);
    let q = ef_block(s, c);
    if (q != last_q) {
      last_q = q;
      let st = stats_from_scratch(scratch[2u * q], scratch[2u * q + 1u]);
      mn = bf16_value(st);
      mx = bf16_value(st >> 16u);
    }
    word = word | (quantize(r, mn, mx) << (i * 4u));

    let pi = s.param_off + c;
    var p = load_param(pi);
    if (h.wd > 0.0) {
      p = p * h.decay;
      if (BF16) { p = bf16_round(p); }
    }
    let u = (c1 * acc_m[l]) / (sqrt(c2 * acc_s[l]) + cfg.eps);
    if (BF16) {
      // The authors' kernel fuses this multiply-add; u is a bf16, so the
      // exact fma_short applies.
      p = fma_short(h.neg_lr, bf16_round(u), p);
    } else {
      p = fma(h.neg_lr, u, p);
    }
    if (BF16) {
      // Two bf16 per word; the thread owns whole words (offsets are even).
      let bits = bitcast<u32>(bf16_round(p)) >> 16u;
      if ((pi & 1u) == 0u) {
        p_word = bits | (params[pi >> 1u] & 0xffff0000u);
        if (i + 1u == count) { params[pi >> 1u] = p_word; }
      } else {
        params[pi >> 1u] = (p_word & 0xffffu) | (bits << 16u);
      }
    } else {
      params[pi] = bitcast<u32>(p);
    }
  }
  let wi = s.codes_off + first / 8u;
  if (count == PER_THREAD) {
    codes[wi] = word;
  } else {
    // Tail of a tensor: keep the bits past its end as they were.
    let mask = (1u << (count * 4u)) - 1u;
    codes[wi] = (codes[wi] & ~mask) | word;
  }
}
