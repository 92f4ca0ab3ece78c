// bf16 bits of f32 values, rounded to nearest even (numeric.wgsl's
// bf16_round), packed two per u32 (element 2w in the low half); the unused
// half of an odd tail is zero. Turns a model's f32 gradient into the bf16
// gradient a bf16 optimizer takes.

@group(0) @binding(0) var<uniform> dims: Length;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> bits: array<u32>;

// Thread w writes word w: elements 2w and 2w + 1.
fn element_count() -> u32 { return (dims.length + 1u) / 2u; }

fn element(w: u32) {
  let i = 2u * w;
  let lo = bitcast<u32>(bf16_round(x[i])) >> 16u;
  var hi = 0u;
  if (i + 1u < dims.length) { hi = bitcast<u32>(bf16_round(x[i + 1u])) >> 16u; }
  bits[w] = lo | (hi << 16u);
}
