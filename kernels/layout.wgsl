// Buffers every optimizer kernel shares; mirrored by src/gpu/layout.ts.

// Per-optimizer constants (uniform).
struct Config {
  beta1: f32,
  beta2: f32,
  eps: f32,
  window: u32,      // MicroAdam m
  ef_block: u32,    // MicroAdam Q
  kind: u32,        // 0 Adam family, 1 MicroAdam
  amsgrad: u32,
  decoupled: u32,   // weight decay: 1 decoupled (AdamW), 0 L2 (Adam)
}

// Learning rate and weight decay of one param group at this step (from the CPU).
struct GroupHyper {
  lr: f32,
  wd: f32,
  decay: f32,       // f32(1 - lr*wd), computed in f64 on the CPU
  neg_lr: f32,
}

// Step scalars: written by the prologue kernel, read by all others. The step
// counter lives here, on the GPU, so that a skipped step (non-finite
// gradient) is decided without a round trip to the CPU.
struct Step {
  skip: u32,        // 1: this step is skipped, every kernel returns at once
  t: u32,           // applied steps, this one included
  slot: u32,        // MicroAdam: window slot written this step
  ring: u32,        // MicroAdam: slot of the next step
  skipped: u32,     // steps skipped so far
  bad_tensor: u32,  // 1 + index of the first non-finite tensor of the last skip
  c1: f32,          // MicroAdam: (1-b1)/(1-b1^t); Adam: 1-b1^t
  c2: f32,          // MicroAdam: (1-b2)/(1-b2^t); Adam: sqrt(1-b2^t)
  calls: u32,       // step calls executed (applied, skipped or refused)
  bad_call: u32,    // `calls` at the last non-finite skip
  refused: u32,     // calls refused: their hyperparameter slot was overwritten
  reserved0: u32,
  hyper_call: u32,  // the call the group hyperparameters below belong to
  reserved1: u32,
  reserved2: u32,
  reserved3: u32,
  param_groups: array<GroupHyper>,
}

// A segment: a contiguous range of one tensor inside one batch.
struct Seg {
  coord_start: u32, // first element, as a coordinate of the tensor
  len: u32,         // elements in the segment
  d: u32,           // elements in the whole tensor
  param_off: u32,   // element offset of the segment in the params binding
  grad_off: u32,    // element offset in the grads binding
  codes_off: u32,   // MicroAdam: u32 word of the segment's first EF code
  window_off: u32,  // MicroAdam: window entry of the segment's first block
  stats_off: u32,   // MicroAdam: EF block index of the tensor's element 0
  block: u32,       // MicroAdam: full top-k block size, min(D, d)
  k_block: u32,     // MicroAdam: entries per full block
  k_tail: u32,      // MicroAdam: entries of the tail block
  first_block: u32, // prefix sum of blocks over the batch's segments
  first_tile: u32,  // prefix sum of 1024-element tiles
  param_group: u32, // param group index
  tensor: u32,      // tensor index, for error reports
  state_off: u32,   // Adam: element offset in the moment buffers
}

struct SegTable {
  num_segs: u32,
  total_blocks: u32,
  total_tiles: u32,
  pad: u32,
  segs: array<Seg>,
}

const TILE: u32 = 1024u;     // elements per tile (elementwise kernels)
const TILE_THREADS: u32 = 128u;

// Dispatches wider than 65535 workgroups are folded into two dimensions.
fn linear_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.y * nwg.x;
}
