// MicroAdam helpers shared by the select and update kernels. They read the
// kernel's `cfg`, `grads`, `codes` and `stats` bindings.

override BF16: bool = false;

// Gradient element i of the grads binding.
fn load_grad(i: u32) -> f32 {
  if (BF16) { return bf16_value(grads[i >> 1u] >> ((i & 1u) * 16u)); }
  return bitcast<f32>(grads[i]);
}

// EF code (0..15) of segment-local coordinate c.
fn load_code(s: Seg, c: u32) -> u32 {
  let n = s.codes_off * 8u + c;
  return (codes[n >> 3u] >> ((n & 7u) * 4u)) & 15u;
}

// Global EF block of segment-local coordinate c.
fn ef_block(s: Seg, c: u32) -> u32 {
  return s.stats_off + (s.coord_start + c) / cfg.ef_block;
}

// Spec step 1: the gradient plus the dequantized error, a = g + e.
fn corrected(s: Seg, c: u32) -> f32 {
  let st = stats[ef_block(s, c)];
  let mn = bf16_value(st);
  let mx = bf16_value(st >> 16u);
  var e = fma_short(ef_unit(mn, mx), f32(load_code(s, c)), mn);
  if (BF16) { e = bf16_round(e); }
  var a = load_grad(s.grad_off + c) + e;
  if (BF16) { a = bf16_round(a); }
  return a;
}

// Top-k sort key: the bits of |a| (bf16 keys are 15 bits wide).
fn topk_key(a: f32) -> u32 {
  let k = bitcast<u32>(a) & 0x7fffffffu;
  if (BF16) { return k >> 16u; }
  return k;
}
