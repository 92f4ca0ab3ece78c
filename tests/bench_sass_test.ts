import assert from "node:assert/strict";
import { zstdCompressSync } from "node:zlib";
import { clean, extractSass, summarize, summaryLine } from "../bench/sass.ts";

/**
 * A pipeline cache blob shaped like the H200's: `pad` bytes, then a zstd
 * frame of an "NVDANVVMNVuc" header whose u32 at 0x4c is the code's size and
 * at 0x50 its offset less 8, with `code` at that offset.
 */
function blobOf(
  code: Uint8Array,
  { pad = 100, magic = "NVDANVVMNVuc", size = code.length, offset = 0x60 } = {},
): Uint8Array {
  const nv = new Uint8Array(offset + 8 + code.length + 32).fill(0xee);
  nv.set(new TextEncoder().encode(magic), 0);
  const view = new DataView(nv.buffer);
  view.setUint32(0x4c, size, true);
  view.setUint32(0x50, offset, true);
  nv.set(code, offset + 8);
  const frame = zstdCompressSync(nv);
  const blob = new Uint8Array(pad + frame.length + 16).fill(0x11);
  blob.set(frame, pad);
  return blob;
}

/** 48 bytes of fake code: S2R first, NOP last, as the driver's code is. */
const CODE = new Uint8Array(48).map((_, i) => i);
CODE.set([0x19, 0x79, 0x06, 0, 0, 0, 0, 0], 0);
CODE.set([0x18, 0x79, 0, 0, 0, 0, 0, 0], 32);

Deno.test("extractSass: the code section of the blob's zstd frame, exactly", () => {
  assert.deepEqual(extractSass(blobOf(CODE)), CODE);
  assert.deepEqual(extractSass(blobOf(CODE, { pad: 0, offset: 0x58 })), CODE);
  // The magic bytes occurring by chance before the real frame are skipped.
  const chance = blobOf(CODE);
  chance.set([0x28, 0xb5, 0x2f, 0xfd], 10);
  assert.deepEqual(extractSass(chance), CODE);
});

Deno.test("extractSass: says what was expected when a step fails", () => {
  // Lavapipe's blobs: a header and no zstd frame.
  assert.throws(
    () => extractSass(new Uint8Array(32).fill(1)),
    /expected a zstd frame \(bytes 28 b5 2f fd\) in the 32-byte blob, found none/,
  );
  assert.throws(
    () => extractSass(blobOf(CODE, { magic: "NOTNVIDIAxyz" })),
    /expected a zstd frame that decompresses to "NVDANVVMNVuc".*bytes starting "NOTNVIDIAxyz"/,
  );
  // The magic and then nothing that decompresses.
  assert.throws(
    () => extractSass(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0])),
    /expected a zstd frame that decompresses to "NVDANVVMNVuc"/,
  );
  assert.throws(
    () => extractSass(blobOf(CODE, { size: 4096 })),
    /expected the code section \[104, 4200\) .* inside the 184 decompressed bytes, it is out of range/,
  );
  assert.throws(
    () => extractSass(blobOf(CODE, { offset: 0x60, size: 40 })),
    /nonzero multiple of 16, got 40/,
  );
});

/** nvdisasm's layout: the encoding's halves as comments, the second alone. */
const LISTING = [
  "        /*0000*/                   S2R R0, SR_TID.X ;                      /* 0x0000000000007919 */",
  "                                                                           /* 0x000e220000002100 */",
  "        /*0010*/                   LDL R2, [R1] ;                          /* 0x0000000001027983 */",
  "                                                                           /* 0x000ea20000100800 */",
  "        /*0020*/                   LDG.E.128.CONSTANT R4, desc[UR4][R2.64] ;  /* 0x0000000402047981 */",
  "                                                                           /* 0x000f280000000900 */",
  "        /*0030*/                   STS [R0], R4 ;                          /* 0x0000000400007388 */",
  "                                                                           /* 0x000fe80000000800 */",
  "        /*0040*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;           /* 0x0000000000007b1d */",
  "                                                                           /* 0x000fec0000010000 */",
  "        /*0050*/              @!P0 BRA 0x20 ;                              /* 0xfffffffc00f08947 */",
  "                                                                           /* 0x000fea000383ffff */",
  "        /*0060*/                   BRA 0x80 ;                              /* 0x0000000000047947 */",
  "                                                                           /* 0x000fea0003800000 */",
  "        /*0070*/                   STG.E desc[UR4][R2.64], R4 ;            /* 0x0000000402007986 */",
  "                                                                           /* 0x000fe2000c101904 */",
  "        /*0080*/                   EXIT ;                                  /* 0x000000000000794d */",
  "                                                                           /* 0x000fea0003800000 */",
  "        /*0090*/                   BRA 0x90;                               /* 0xfffffffc00fc7947 */",
  "                                                                           /* 0x000fc0000383ffff */",
].join("\n");

Deno.test("summarize: instruction, barrier and memory counts; backward branches", () => {
  const s = summarize(LISTING);
  assert.deepEqual(s, {
    instructions: 10,
    barriers: 1,
    localLoads: 1,
    localStores: 0,
    globalLoads: 1,
    globalStores: 1,
    sharedStores: 1,
    // 0x50 -> 0x20 only: 0x60 -> 0x80 goes forward, 0x90 -> 0x90 to itself.
    loops: 1,
  });
  assert.equal(
    summaryLine("k.f32.spv", s),
    "sass | k.f32.spv | 10 instructions, 1 BAR.SYNC, LDL 1 / STL 0, LDG 1 / STG 1, 1 backward branches",
  );
  assert.equal(summarize("").instructions, 0);
});

Deno.test("summarize: branch targets given as labels (cubin listings)", () => {
  const s = summarize([
    ".L_x_0:",
    "        /*0000*/                   IADD3 R0, R0, 0x1, RZ ;",
    "        /*0010*/                   ISETP.GE.AND P0, PT, R0, 0x4, PT ;",
    "        /*0020*/              @!P0 BRA `(.L_x_0) ;",
    "        /*0030*/                   BRA `(.L_x_1) ;",
    ".L_x_1:",
    "        /*0040*/                   EXIT ;",
  ].join("\n"));
  assert.equal(s.instructions, 5);
  assert.equal(s.loops, 1);
});

Deno.test("clean: drops the encodings, keeps /*addr*/ INSTR ; lines", () => {
  const lines = clean(LISTING).split("\n");
  assert.equal(lines.length, 10);
  assert.deepEqual(lines.slice(0, 3), [
    "/*0000*/ S2R R0, SR_TID.X ;",
    "/*0010*/ LDL R2, [R1] ;",
    "/*0020*/ LDG.E.128.CONSTANT R4, desc[UR4][R2.64] ;",
  ]);
  assert.equal(lines[5], "/*0050*/ @!P0 BRA 0x20 ;");
  assert.equal(lines[9], "/*0090*/ BRA 0x90 ;");
  assert.ok(lines.every((l) => !l.includes("0x000")), "no encoding is left");
  // Labels and other lines stay.
  assert.equal(clean(".L_x_0:  \n/* 0x000fea0003800000 */"), ".L_x_0:");
});
