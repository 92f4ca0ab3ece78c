// The streaming ceiling as WGSL code sees it: a plain copy, 16 bytes per
// thread and access, timed by bench/device.ts beside PyTorch's
// device-to-device copy.

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) tid: u32,
) {
  let base = (wid.x + wid.y * nwg.x) * 1024u + tid;
  let n = arrayLength(&src);
  var v: array<vec4<u32>, 4>;
  for (var i = 0u; i < 4u; i++) {
    if (base + 256u * i < n) { v[i] = src[base + 256u * i]; }
  }
  for (var i = 0u; i < 4u; i++) {
    if (base + 256u * i < n) { dst[base + 256u * i] = v[i]; }
  }
}
