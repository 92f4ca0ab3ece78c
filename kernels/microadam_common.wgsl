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

// Spec step 1, dequantized error of one code: e = fma(code, u, min).
fn ef_value(code: u32, mn: f32, u: f32) -> f32 {
  let e = fma_short(u, f32(code), mn);
  if (BF16) { return bf16_round(e); }
  return e;
}

// Spec step 1, the error-corrected gradient a = g + e.
fn add_error(g: f32, e: f32) -> f32 {
  if (BF16) { return bf16_round(g + e); }
  return g + e;
}

// a = g + e of segment-local coordinate c, straight from memory.
fn corrected(s: Seg, c: u32) -> f32 {
  let st = stats[ef_block(s, c)];
  let mn = bf16_value(st);
  let mx = bf16_value(st >> 16u);
  let e = ef_value(load_code(s, c), mn, ef_unit(mn, mx));
  return add_error(load_grad(s.grad_off + c), e);
}

// Top-k sort key: the bits of |a| (bf16 keys are 15 bits wide).
fn topk_key(a: f32) -> u32 {
  let k = bitcast<u32>(a) & 0x7fffffffu;
  if (BF16) { return k >> 16u; }
  return k;
}
