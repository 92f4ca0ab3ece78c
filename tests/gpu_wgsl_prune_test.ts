import assert from "node:assert/strict";
import { pruneWgsl } from "../src/gpu/wgsl_prune.ts";
import { KERNEL_NAMES, kernelSource } from "../src/gpu/kernels.ts";

// `src` without its line comments.
function uncommented(src: string): string {
  return src.replace(/\/\/[^\n]*/g, "");
}

// The names a module declares at its top level, by kind.
function declared(src: string): { fns: string[]; wgVars: string[] } {
  const code = uncommented(src);
  return {
    fns: [...code.matchAll(/^\s*fn\s+(\w+)/gm)].map((m) => m[1]),
    wgVars: [...code.matchAll(/var<workgroup>\s+(\w+)/g)].map((m) => m[1]),
  };
}

const MODULE = `
// A comment with braces { and a fake fn nowhere() {} in it.
enable f16;
struct Pair { a: u32, b: u32, };
const N: u32 = 64u;
override SCALE: f32 = 1.0;
@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@group(0) @binding(1) var<storage, read> unread: array<u32>;
var<workgroup> shared_used: array<u32, N>;
var<workgroup> shared_unused: array<vec4<u32>, 256>;
var<private> seed: u32;
var<private> stale: u32;
/* a block comment /* nested */ with fn ghost() {} */
fn leaf(x: u32) -> u32 { return x * 2u; }
fn middle(x: u32) -> u32 {
  if (x > 3u) { return leaf(x) + seed; }
  return shared_used[x];
}
fn unused_caller() -> u32 { return leaf(shared_unused[0].x) + stale; }
const_assert N > 1u;
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) i: u32) {
  shared_used[i] = i;
  workgroupBarrier();
  out[i] = middle(i);
}
`;

Deno.test("pruneWgsl: drops the functions and workgroup/private variables no entry point reaches", () => {
  const out = pruneWgsl(MODULE);
  const d = declared(out);
  assert.deepEqual(d.fns, ["leaf", "middle", "main"]);
  assert.deepEqual(d.wgVars, ["shared_used"]);
  assert.ok(out.includes("var<private> seed"));
  assert.ok(!out.includes("stale"));
  assert.ok(!out.includes("unused_caller"));
});

Deno.test("pruneWgsl: keeps bindings, constants, overrides, structs, directives and const_assert, used or not", () => {
  const out = pruneWgsl(MODULE);
  for (
    const kept of [
      "enable f16;",
      "struct Pair { a: u32, b: u32, };",
      "override SCALE",
      "var<storage, read> unread",
      "const_assert N > 1u;",
      "// A comment with braces",
    ]
  ) {
    assert.ok(out.includes(kept), `expected ${JSON.stringify(kept)} kept`);
  }
});

Deno.test("pruneWgsl: a module without an entry point, or with nothing unreached, comes back unchanged", () => {
  const library =
    "var<workgroup> a: array<u32, 4>;\nfn f() -> u32 { return a[0]; }\n";
  assert.equal(pruneWgsl(library), library);
  const whole =
    "var<workgroup> a: array<u32, 4>;\n@compute @workgroup_size(4)\nfn main(@builtin(local_invocation_index) i: u32) { a[i] = i; }\n";
  assert.equal(pruneWgsl(whole), whole);
});

Deno.test("pruneWgsl: the text of every item it keeps is unchanged, in order", () => {
  const out = pruneWgsl(MODULE);
  let at = 0;
  for (const line of out.split("\n")) {
    const found = MODULE.indexOf(line, at);
    assert.ok(found >= 0, `line not in the source, in order: ${line}`);
    at = found + line.length;
  }
});

Deno.test("kernelSource: every kernel's workgroup variables are all used (none left for the driver to reserve)", () => {
  for (const name of KERNEL_NAMES) {
    for (const subgroups of [false, true]) {
      // Mentions in comments do not count as uses.
      const src = uncommented(kernelSource(name, { subgroups }));
      const { wgVars } = declared(src);
      for (const v of wgVars) {
        const uses = src.match(new RegExp(`\\b${v}\\b`, "g"))!.length;
        assert.ok(uses > 1, `${name} (subgroups ${subgroups}): ${v} unused`);
      }
    }
  }
  // The update kernel's reductions need one subgroup array of the shared
  // snippet's three: the 1 KiB vec4 partials (wg_sg4) are gone.
  const update = declared(
    kernelSource("microadamUpdateFast", { subgroups: true }),
  );
  assert.ok(update.wgVars.includes("wg_sg"));
  assert.ok(!update.wgVars.includes("wg_sg4"));
  assert.ok(!update.wgVars.includes("wg_out"));
});
