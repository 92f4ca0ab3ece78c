import assert from "node:assert/strict";
import { resolveOverrides, spirvOf } from "../bench/spirv.ts";
import { kernelSource } from "../src/gpu/kernels.ts";

Deno.test("resolveOverrides: given values replace defaults, by type", () => {
  const code = [
    "override BF16: bool = false;",
    "override N: u32 = 4u;",
    "override S: i32 = -1;",
    "override X: f32 = 0.5;",
  ].join("\n");
  assert.equal(
    resolveOverrides(code, { BF16: 1, N: 7, X: 2 }),
    [
      "const BF16: bool = true;",
      "const N: u32 = 7u;",
      "const S: i32 = -1;",
      "const X: f32 = 2f;",
    ].join("\n"),
  );
  assert.equal(
    resolveOverrides("override B: bool = true;", { B: 0 }),
    "const B: bool = false;",
  );
});

Deno.test("spirvOf: a SPIR-V module per build, with the kernel's binding kinds", () => {
  const code = kernelSource("microadamSelectFast", { subgroups: true });
  const f32 = spirvOf(code, { BF16: 0, EXACT_FMA: 1 });
  const bf16 = spirvOf(code, { BF16: 1, EXACT_FMA: 1 });
  assert.equal(f32.words[0], 0x07230203); // the SPIR-V magic number
  // cfg is the one uniform; the rest are storage buffers.
  assert.deepEqual(f32.bindings, ["u", "s", "s", "s", "s", "s", "s", "s", "s"]);
  assert.notDeepEqual(f32.words, bf16.words);
  assert.equal(spirvOf(kernelSource("adam4")).words[0], 0x07230203);
});

Deno.test("spirvOf: bindings must be group 0, numbered without gaps", () => {
  const code = `@group(0) @binding(1) var<storage, read_write> x: array<u32>;
@compute @workgroup_size(1) fn main() { x[0] = 1u; }`;
  assert.throws(() => spirvOf(code), /expected group 0 bindings 0\.\.0/);
  assert.throws(() => spirvOf("fn main( {"), /./); // a parse error is thrown
});
