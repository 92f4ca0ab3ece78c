// MicroAdam last step: store this step's EF statistics (bf16 min/max) from
// the keys in `work` (atomics on the general path, plain stores on the fast
// one) and zero the keys for the next step. A skipped step only zeroes them:
// the select kernels ran before the step was known to be skipped.

@group(0) @binding(0) var<storage, read> step: Step;
@group(0) @binding(1) var<storage, read_write> stats: array<u32>;
@group(0) @binding(2) var<storage, read_write> work: array<u32>;

// One thread per EF block (kernels/elementwise.wgsl is the entry point).
fn element_count() -> u32 { return arrayLength(&stats); }

fn element(i: u32) {
  if (step.skip == 0u) {
    stats[i] = stats_from_scratch(work[2u * i], work[2u * i + 1u]);
  }
  work[2u * i] = 0u;
  work[2u * i + 1u] = 0u;
}
