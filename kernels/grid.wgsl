// Workgroup indexing shared by every kernel. The structs and constants the
// kernels share with TypeScript are emitted ahead of each kernel from
// src/gpu/layout.ts.

// Dispatches wider than 65535 workgroups are folded into two dimensions.
fn linear_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.y * nwg.x;
}
