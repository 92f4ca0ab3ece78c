/**
 * SPIR-V of this library's kernels, for the Vulkan driver's own report of
 * what it compiled them to (`bench/vkstats.py` on the GPU machine: registers
 * per thread, local memory, workgroup memory, binary size). WebGPU reports
 * none of it. Deno's WebGPU hands the driver SPIR-V made by naga; this file
 * makes it with naga too, through `npm:naga-wasm` (naga 30, not necessarily
 * the version inside Deno 2.9.6, and without wgpu's bounds-check clamps), so
 * the report is of a close relative of the shipped build. Pipeline
 * overrides become constants first, since SPIR-V out of naga needs them
 * resolved.
 *
 * ```sh
 * deno run -A bench/spirv.ts --out .carry/spv          # here
 * python3 bench/vkstats.py .carry/spv                  # on the GPU machine
 * ```
 *
 * writes `<kernel>.<f32|bf16>.spv` for the one-pass MicroAdam kernels (or
 * `--kernels a,b`; `--impl` takes another build's `mod.ts`) and
 * `manifest.txt`: one `file:bindings` line each, the bindings of group 0 in
 * order (`u` uniform, `s` storage), which vkstats.py needs to build a
 * pipeline layout.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { FAST_LANES } from "../src/gpu/layout.ts";
import { BF16_LANES } from "../src/optim/microadam.ts";
import { parseWgsl, validate, writeSpirv } from "naga-wasm";

/** A kernel as SPIR-V words and the kinds of its group-0 bindings. */
export interface Spirv {
  /** The module's words (starting with the magic number 0x07230203). */
  words: Uint32Array;
  /** Binding i of group 0: `"u"` a uniform buffer, `"s"` a storage buffer. */
  bindings: ("u" | "s")[];
}

/**
 * `code` (WGSL) with each `override` turned into a `const` of the value in
 * `constants` (booleans as 0/1) or of its default.
 *
 * @example
 * ```ts
 * import { resolveOverrides } from "./spirv.ts";
 * const code = "override BF16: bool = false;\noverride N: u32 = 4u;";
 * console.log(resolveOverrides(code, { BF16: 1 }));
 * // const BF16: bool = true;
 * // const N: u32 = 4u;
 * ```
 */
export function resolveOverrides(
  code: string,
  constants: Record<string, number> = {},
): string {
  return code.replace(
    /override\s+(\w+)\s*:\s*(\w+)\s*=\s*([^;]+);/g,
    (_, name: string, type: string, fallback: string) => {
      const v = constants[name];
      if (v === undefined) return `const ${name}: ${type} = ${fallback};`;
      const value = type === "bool"
        ? String(v !== 0)
        : type === "f32"
        ? `${v}f`
        : `${v}${type === "u32" ? "u" : "i"}`;
      return `const ${name}: ${type} = ${value};`;
    },
  );
}

/**
 * SPIR-V of a WGSL compute kernel whose bindings are group 0, numbered from
 * 0 without gaps (as every kernel of this library's optimizers).
 *
 * @example
 * ```ts
 * import { kernelSource } from "../src/gpu/kernels.ts";
 * import { spirvOf } from "./spirv.ts";
 * const s = spirvOf(kernelSource("adam4"));
 * console.log(s.words[0].toString(16), s.bindings.length > 0); // 7230203 true
 * ```
 */
export function spirvOf(
  code: string,
  constants: Record<string, number> = {},
): Spirv {
  const resolved = resolveOverrides(code, constants);
  const found = [...resolved.matchAll(
    /@group\((\d+)\)\s*@binding\((\d+)\)\s*var<(\w+)/g,
  )].map((m) => ({
    group: Number(m[1]),
    binding: Number(m[2]),
    kind: m[3] === "uniform" ? "u" as const : "s" as const,
  })).sort((a, b) => a.binding - b.binding);
  found.forEach((b, i) => {
    if (b.group !== 0 || b.binding !== i) {
      throw new Error(
        `spirvOf: expected group 0 bindings 0..${
          found.length - 1
        }, got @group(${b.group}) @binding(${b.binding})`,
      );
    }
  });
  const module = parseWgsl(resolved);
  try {
    const info = validate(module);
    try {
      return {
        words: writeSpirv(module, info, {}),
        bindings: found.map((b) => b.kind),
      };
    } finally {
      info.free();
    }
  } finally {
    module.free();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      out: { type: "string", default: ".carry/spv" },
      impl: { type: "string", default: "../mod.ts" },
      kernels: {
        type: "string",
        default: "microadamSelectFast,microadamUpdateFast",
      },
    },
  });
  const { kernelSource } = (await import(
    new URL(
      values.impl.replace(/mod\.ts$/, "src/gpu/kernels.ts"),
      import.meta.url,
    ).href
  )) as typeof import("../src/gpu/kernels.ts");
  Deno.mkdirSync(values.out, { recursive: true });
  const lines: string[] = [];
  // The impl's kernelSource, typed as this tree's (an older build may lack
  // a variant field, which it then ignores).
  type Name = Parameters<typeof kernelSource>[0];
  type Variant = Parameters<typeof kernelSource>[1];
  for (const name of values.kernels.split(",")) {
    const source = (variant: Variant) => kernelSource(name as Name, variant);
    // The kernels without lanes, then (one-pass kernels of a build that has
    // them) with the lanes a batch of several binding pairs takes: f32
    // FAST_LANES, bf16 BF16_LANES (this tree's counts).
    const variants = source({ lanes: FAST_LANES }) === source({})
      ? [[1, 0], [1, 1]]
      : [[1, 0], [1, 1], [FAST_LANES, 0], [BF16_LANES, 1]];
    for (const [lanes, bf16] of variants) {
      // The H200 takes the subgroup reductions and the exact fma.
      const s = spirvOf(source({ subgroups: true, lanes }), {
        BF16: bf16,
        EXACT_FMA: 1,
      });
      const file = `${name}${lanes > 1 ? `Lanes${lanes}` : ""}.${
        bf16 ? "bf16" : "f32"
      }.spv`;
      Deno.writeFileSync(
        `${values.out}/${file}`,
        new Uint8Array(s.words.buffer, s.words.byteOffset, s.words.byteLength),
      );
      lines.push(`${file}:${s.bindings.join(",")}`);
    }
  }
  Deno.writeTextFileSync(`${values.out}/manifest.txt`, lines.join("\n") + "\n");
  console.log(lines.join("\n"));
}
