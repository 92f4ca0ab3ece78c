/**
 * The NVIDIA machine code (SASS) that the Vulkan driver compiled this
 * library's kernels to. `bench/vkstats.py --cache` saves each pipeline's
 * cache blob; on the H200 (driver 580) the blob holds a zstd frame, and
 * that frame, decompressed, an "NVDANVVMNVuc" header whose u32 at 0x4c is
 * the code's size (the driver's Binary Size statistic) and whose u32 at
 * 0x50 is where the code starts, less 8. This takes the code out and
 * disassembles it with nvdisasm (CUDA 12.8's, inside Triton, on the GPU
 * machine). Python there has no zstd, hence Deno.
 *
 * ```sh
 * deno run -A bench/spirv.ts --out .carry/spv                  # here
 * python3 bench/vkstats.py .carry/spv --cache .carry/sass      # on the GPU machine
 * deno run -A bench/sass.ts .carry/sass [--nvdisasm PATH]      # on the GPU machine
 * ```
 *
 * For each `<name>.cache` in the folder it writes `<name>.bin` (the raw
 * code), `<name>.s` (the disassembly without the encodings) and prints
 *
 * ```text
 * sass | <name> | <n> instructions, <n> BAR.SYNC, LDL <n> / STL <n>, LDG <n> / STG <n>, <n> backward branches
 * ```
 *
 * Without nvdisasm it says so once and writes only the `.bin` files. A blob
 * that holds no code (lavapipe's, say) gets a line saying what was missing,
 * and the exit code is then 1.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { zstdDecompressSync } from "node:zlib";

/** Where nvdisasm is on the GPU machine: Triton's copy (CUDA 12.8). */
export const NVDISASM =
  "/opt/torch/.venv/lib/python3.12/site-packages/triton/backends/nvidia/bin/nvdisasm";

/** A zstd frame's first four bytes (0xfd2fb528, little-endian). */
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];
/** The first bytes of the decompressed frame. */
const NV_MAGIC = "NVDANVVMNVuc";
/** Header fields (u32, little-endian): the code's size, and its offset less 8. */
const SIZE_AT = 0x4c;
const OFFSET_AT = 0x50;

/** Instruction counts of a disassembly, as {@link summarize} returns them. */
export interface SassSummary {
  /** Lines that hold an instruction (a `/*0040*\/`-style address). */
  instructions: number;
  /** `BAR.SYNC` (workgroup barriers). */
  barriers: number;
  /** `LDL`: loads from local memory (spills, private arrays). */
  localLoads: number;
  /** `STL`: stores to local memory. */
  localStores: number;
  /** `LDG`: loads from global memory. */
  globalLoads: number;
  /** `STG`: stores to global memory. */
  globalStores: number;
  /** `STS`: stores to shared (workgroup) memory. */
  sharedStores: number;
  /**
   * `BRA`s whose target lies below their own address: loops. The closing
   * `BRA` to itself after `EXIT` does not count.
   */
  loops: number;
}

/** The offsets where a zstd frame's magic bytes occur in `blob`. */
function zstdFrames(blob: Uint8Array): number[] {
  const found: number[] = [];
  for (let i = 0; i + ZSTD_MAGIC.length <= blob.length; i++) {
    if (ZSTD_MAGIC.every((b, j) => blob[i + j] === b)) found.push(i);
  }
  return found;
}

/**
 * The raw SASS in an NVIDIA Vulkan pipeline cache blob (what
 * `vkGetPipelineCacheData` returns on the H200, driver 580). Throws an
 * Error saying what was expected and what came when the blob holds no zstd
 * frame, no frame decompresses to data starting with "NVDANVVMNVuc", or the
 * code section (size at 0x4c, a multiple of 16; offset at 0x50, plus 8)
 * lies outside the decompressed data.
 *
 * @example
 * ```ts ignore
 * import { extractSass } from "./sass.ts";
 * const code = extractSass(Deno.readFileSync("microadamSelectFast.f32.spv.cache"));
 * Deno.writeFileSync("microadamSelectFast.f32.spv.bin", code);
 * ```
 */
export function extractSass(blob: Uint8Array): Uint8Array {
  const frames = zstdFrames(blob);
  if (frames.length === 0) {
    throw new Error(
      `extractSass: expected a zstd frame (bytes 28 b5 2f fd) in the ${blob.length}-byte blob, found none`,
    );
  }
  // The magic bytes may also occur by chance before the real frame, and
  // node:zlib returns what it could (often nothing) for a broken frame
  // rather than throwing: the first frame that decompresses to the NVIDIA
  // header wins.
  let nv: Uint8Array | undefined;
  const seen: string[] = [];
  for (const at of frames) {
    let out: Uint8Array;
    try {
      out = new Uint8Array(zstdDecompressSync(blob.subarray(at)));
    } catch (e) {
      seen.push(`at ${at}: ${e instanceof Error ? e.message : e}`);
      continue;
    }
    const head = new TextDecoder("latin1").decode(
      out.subarray(0, NV_MAGIC.length),
    );
    if (head === NV_MAGIC) {
      nv = out;
      break;
    }
    seen.push(
      `at ${at}: ${out.length} bytes` +
        (out.length ? ` starting ${JSON.stringify(head)}` : ""),
    );
  }
  if (nv === undefined) {
    throw new Error(
      `extractSass: expected a zstd frame that decompresses to "${NV_MAGIC}"..., got ${
        seen.join("; ")
      }`,
    );
  }
  if (nv.length < OFFSET_AT + 4) {
    throw new Error(
      `extractSass: expected a header of at least ${
        OFFSET_AT + 4
      } bytes (size at 0x4c, offset at 0x50), got ${nv.length} bytes`,
    );
  }
  const view = new DataView(nv.buffer, nv.byteOffset, nv.byteLength);
  const size = view.getUint32(SIZE_AT, true);
  const start = view.getUint32(OFFSET_AT, true) + 8;
  if (size === 0 || size % 16 !== 0) {
    // Hopper's instructions are 16 bytes each.
    throw new Error(
      `extractSass: expected a code size (u32 at 0x4c) that is a nonzero multiple of 16, got ${size}`,
    );
  }
  if (start + size > nv.length) {
    throw new Error(
      `extractSass: expected the code section [${start}, ${
        start + size
      }) (offset at 0x50 + 8, size at 0x4c) inside the ${nv.length} decompressed bytes, it is out of range`,
    );
  }
  return nv.slice(start, start + size);
}

/** An instruction line: its address and the instruction up to its `;`. */
const INSTRUCTION = /^\s*\/\*([0-9a-fA-F]+)\*\/\s+([^;]*?)\s*;/;
/** A line holding only an encoding comment, `/* 0x000fe40003f26070 *\/`. */
const ENCODING_ONLY = /^\s*\/\*\s*0x[0-9a-fA-F]+\s*\*\/\s*$/;
/** A label line, `.L_x_3:` (nvdisasm names branch targets so in cubins). */
const LABEL = /^\s*(\.?[A-Za-z_$][\w$.]*):\s*$/;

/** The opcode of an instruction, past a predicate such as `@!P0`. */
function opcode(instruction: string): string {
  return instruction.replace(/^@!?\w+\s+/, "").split(/\s+/)[0];
}

/**
 * Counts of an nvdisasm listing's instructions: all of them, `BAR.SYNC`,
 * `LDL`, `STL`, `LDG`, `STG`, `STS` (any suffixes), and backward branches
 * (a `BRA` whose target, `0x…` or a label, lies below its own address).
 *
 * @example
 * ```ts
 * import { summarize } from "./sass.ts";
 * const s = summarize(`
 *         /*0000*\/                   LDG.E R0, desc[UR4][R2.64] ;
 *         /*0010*\/                   BRA 0x10 ;`);
 * console.log(s.instructions, s.globalLoads, s.loops); // 2 1 0 (a BRA to itself is no loop)
 * ```
 */
export function summarize(disassembly: string): SassSummary {
  const s: SassSummary = {
    instructions: 0,
    barriers: 0,
    localLoads: 0,
    localStores: 0,
    globalLoads: 0,
    globalStores: 0,
    sharedStores: 0,
    loops: 0,
  };
  const counted: Record<string, keyof SassSummary> = {
    LDL: "localLoads",
    STL: "localStores",
    LDG: "globalLoads",
    STG: "globalStores",
    STS: "sharedStores",
  };
  // Labels first: a label stands for the address of the instruction after it.
  const labels = new Map<string, number>();
  let pending: string[] = [];
  const lines = disassembly.split("\n");
  for (const line of lines) {
    const label = LABEL.exec(line);
    if (label) pending.push(label[1]);
    const m = INSTRUCTION.exec(line);
    if (m) {
      for (const name of pending) labels.set(name, parseInt(m[1], 16));
      pending = [];
    }
  }
  for (const line of lines) {
    const m = INSTRUCTION.exec(line);
    if (!m) continue;
    s.instructions++;
    const address = parseInt(m[1], 16);
    const op = opcode(m[2]);
    const base = op.split(".")[0];
    if (op === "BAR.SYNC" || op.startsWith("BAR.SYNC.")) s.barriers++;
    const field = counted[base];
    if (field) s[field]++;
    if (base === "BRA") {
      const target = /(?:\b0x([0-9a-fA-F]+)|`\(([^)]+)\))\s*$/.exec(m[2]);
      const to = target?.[1] !== undefined
        ? parseInt(target[1], 16)
        : labels.get(target?.[2] ?? "");
      if (to !== undefined && to < address) s.loops++;
    }
  }
  return s;
}

/**
 * An nvdisasm listing without its encodings: each instruction line becomes
 * `/*addr*\/ INSTR ;`, the lines holding only an encoding's second half go,
 * and other lines (labels, headers) stay, their trailing blanks trimmed.
 *
 * @example
 * ```ts
 * import { clean } from "./sass.ts";
 * console.log(clean([
 *   "        /*0000*\/                   EXIT ;            /* 0x000000000000794d *\/",
 *   "                                                      /* 0x000fea0003800000 *\/",
 * ].join("\n"))); // /*0000*\/ EXIT ;
 * ```
 */
export function clean(disassembly: string): string {
  const out: string[] = [];
  for (const line of disassembly.split("\n")) {
    if (ENCODING_ONLY.test(line)) continue;
    const m = INSTRUCTION.exec(line);
    out.push(m ? `/*${m[1]}*/ ${m[2]} ;` : line.trimEnd());
  }
  return out.join("\n");
}

/** The summary line that the CLI prints for one kernel. */
export function summaryLine(name: string, s: SassSummary): string {
  return `sass | ${name} | ${s.instructions} instructions, ${s.barriers} BAR.SYNC, LDL ${s.localLoads} / STL ${s.localStores}, LDG ${s.globalLoads} / STG ${s.globalStores}, ${s.loops} backward branches`;
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    options: { nvdisasm: { type: "string", default: NVDISASM } },
    allowPositionals: true,
  });
  if (positionals.length !== 1) {
    console.error("usage: deno run -A bench/sass.ts DIR [--nvdisasm PATH]");
    Deno.exit(2);
  }
  const dir = positionals[0];
  const names = [...Deno.readDirSync(dir)]
    .filter((e) => e.isFile && e.name.endsWith(".cache"))
    .map((e) => e.name.slice(0, -".cache".length))
    .sort();
  if (names.length === 0) {
    console.error(`sass | expected *.cache files in ${dir}, found none`);
    Deno.exit(1);
  }
  let disassembler: string | undefined = values.nvdisasm;
  try {
    Deno.statSync(disassembler);
  } catch {
    console.log(
      `sass | no nvdisasm at ${disassembler}: writing the .bin files only`,
    );
    disassembler = undefined;
  }
  let failed = 0;
  for (const name of names) {
    let code: Uint8Array;
    try {
      code = extractSass(Deno.readFileSync(`${dir}/${name}.cache`));
    } catch (e) {
      console.log(`sass | ${name} | ${e instanceof Error ? e.message : e}`);
      failed++;
      continue;
    }
    const bin = `${dir}/${name}.bin`;
    Deno.writeFileSync(bin, code);
    if (!disassembler) {
      console.log(`sass | ${name} | ${code.length} B of code -> ${bin}`);
      continue;
    }
    // SM90: Hopper, the H200's architecture.
    const run = new Deno.Command(disassembler, { args: ["-b", "SM90", bin] })
      .outputSync();
    if (!run.success) {
      console.log(
        `sass | ${name} | nvdisasm exited with ${run.code}: ${
          new TextDecoder().decode(run.stderr).trim()
        }`,
      );
      failed++;
      continue;
    }
    const listing = new TextDecoder().decode(run.stdout);
    Deno.writeTextFileSync(`${dir}/${name}.s`, clean(listing) + "\n");
    console.log(summaryLine(name, summarize(listing)));
  }
  if (failed > 0) Deno.exitCode = 1;
}
