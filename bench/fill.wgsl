// Benchmark data made on the GPU (tens of gigabytes for the LLaMA shapes
// would take minutes through writeBuffer): element i of a buffer gets a
// pseudo-random value from a hash of (seed, i). Parameters are uniform in
// ±[0.01, 1); gradients have a random sign and a magnitude spread evenly
// over `octaves` octaves below 1e-2, the spread of real gradients, with
// every top-k block seeing the full range.

struct Fill {
  words: u32,   // u32 words to write
  seed: u32,
  kind: u32,    // 0 parameters, 1 gradients
  bf16: u32,    // 1: two bf16 values per word
  octaves: u32,
}

@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@group(0) @binding(1) var<uniform> fill: Fill;

fn hash(x: u32) -> u32 {
  var h = x * 747796405u + 2891336453u;
  h = ((h >> ((h >> 28u) + 4u)) ^ h) * 277803737u;
  return (h >> 22u) ^ h;
}

fn value(i: u32) -> f32 {
  let r1 = hash(i ^ hash(fill.seed));
  let r2 = hash(r1 + 0x9e3779b9u);
  let unit = f32(r2 >> 8u) / 16777216.0; // [0, 1)
  let sign = select(1.0, -1.0, (r1 & 1u) == 1u);
  if (fill.kind == 0u) { return sign * (0.01 + 0.99 * unit); }
  let octave = f32((r1 >> 1u) % fill.octaves);
  return sign * 1e-2 * exp2(-octave) * (1.0 + unit);
}

fn bf16_bits(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  return ((b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u) & 0xffffu;
}

@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) tid: u32,
) {
  let w = (wid.x + wid.y * nwg.x) * 256u + tid;
  if (w >= fill.words) { return; }
  if (fill.bf16 == 1u) {
    out[w] = bf16_bits(value(2u * w)) | (bf16_bits(value(2u * w + 1u)) << 16u);
  } else {
    out[w] = bitcast<u32>(value(w));
  }
}
