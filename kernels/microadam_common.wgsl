// MicroAdam helpers shared by the select and update kernels. They read the
// kernel's `cfg`, `step`, `grads`, `codes` and `stats` bindings.
//
// The EF codes are double-buffered: a batch's `codes` buffer holds two
// halves, and the n-th step call the GPU executes reads half (n - 1) mod 2
// and writes half n mod 2 (a skipped step copies instead), so the codes can
// be rewritten by the first kernel, before the prologue knows whether the
// step is applied. n is the GPU's own count (`step.calls`, which the
// prologue advances), not the CPU's: a call the GPU never ran must not flip
// the halves.

override BF16: bool = false;

// Word offsets of the codes halves this call reads and writes; set by
// set_code_halves(call) at the start of every kernel that touches codes.
var<private> codes_in_base: u32;
var<private> codes_out_base: u32;

fn set_code_halves(call: u32) {
  let half = arrayLength(&codes) / 2u;
  codes_out_base = select(0u, half, (call & 1u) == 1u);
  codes_in_base = half - codes_out_base;
}

// The number of the call being executed, in a kernel that runs before the
// prologue (which then counts it) or after it.
fn call_before_prologue() -> u32 { return step.calls + 1u; }
fn call_after_prologue() -> u32 { return step.calls; }

// Gradient element i of the grads binding.
fn load_grad(i: u32) -> f32 {
  if (BF16) { return bf16_value(grads[i >> 1u] >> ((i & 1u) * 16u)); }
  return bitcast<f32>(grads[i]);
}

// Whether gradient element i is NaN, ±Inf or at least 2^GRADIENT_LIMIT_LOG2
// in magnitude (src/core/limits.ts): such a gradient skips the whole step.
fn grad_too_large(i: u32) -> bool {
  if (BF16) { return bf16_bits_too_large(grads[i >> 1u] >> ((i & 1u) * 16u)); }
  return f32_bits_too_large(grads[i]);
}

// |g| >= 2^L exactly when the exponent field is >= 127 + L (NaN and Inf too).
fn f32_bits_too_large(bits: u32) -> bool {
  return (bits & 0x7f800000u) >= ((127u + GRADIENT_LIMIT_LOG2) << 23u);
}

fn bf16_bits_too_large(bits: u32) -> bool {
  return (bits & 0x7f80u) >= ((127u + GRADIENT_LIMIT_LOG2) << 7u);
}

// EF code (0..15) of segment-local coordinate c, from this call's input half.
fn load_code(s: Seg, c: u32) -> u32 {
  let n = (codes_in_base + s.codes_off) * 8u + c;
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

// A window entry: block-local index | bf16(a) << 16.
fn window_entry(index: u32, a: f32) -> u32 {
  return index | ((bitcast<u32>(bf16_round(a)) >> 16u) << 16u);
}
