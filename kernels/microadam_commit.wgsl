// MicroAdam last step: store this step's EF statistics (bf16 min/max) from
// the atomic accumulators and zero them for the next step.

@group(0) @binding(0) var<storage, read> step: Step;
@group(0) @binding(1) var<storage, read_write> stats: array<u32>;
@group(0) @binding(2) var<storage, read_write> scratch: array<u32>;

@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) tid: u32,
) {
  let i = linear_workgroup(wid, nwg) * 256u + tid;
  if (step.skip != 0u || i >= arrayLength(&stats)) { return; }
  stats[i] = stats_from_scratch(scratch[2u * i], scratch[2u * i + 1u]);
  scratch[2u * i] = 0u;
  scratch[2u * i + 1u] = 0u;
}
