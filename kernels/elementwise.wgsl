// The entry point of the kernels that run one thread per element (the
// model's elementwise kernels in kernels/nn/, MicroAdam's commit): thread i
// of the (folded, see grid.wgsl) grid calls the kernel's element(i) when
// i < element_count(). The kernel defines both.

@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = linear_workgroup(wid, nwg) * 256u + lid;
  if (i < element_count()) { element(i); }
}
