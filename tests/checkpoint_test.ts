import assert from "node:assert/strict";
import { CheckpointError } from "../src/errors.ts";
import { crc32 } from "../src/numeric/crc32.ts";
import type { OptimizerState } from "../src/core/state.ts";
import {
  CHECKPOINT_MAGIC,
  CHECKPOINT_VERSION,
  decodeCheckpoint,
  encodeCheckpoint,
} from "../src/checkpoint/format.ts";
import {
  loadCheckpoint,
  saveCheckpoint,
  writeFileAtomic,
} from "../src/checkpoint/file.ts";
import { type ExpectedState, matchState } from "../src/checkpoint/validate.ts";

/** Deterministic bytes (xorshift), so failures reproduce. */
function bytesOf(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = s & 0xff;
  }
  return out;
}

function sampleState(): OptimizerState {
  return {
    optimizer: "MicroAdam",
    config: {
      window: 10,
      density: 0.01,
      lr: 1e-3 / 3, // not exactly representable in decimal: must round-trip
      dtype: "bf16",
      amsgrad: false,
      "unicode ✓ key": "välue",
    },
    step: 2 ** 40 + 7, // beyond u32
    calls: 2 ** 53 - 1,
    skipped: 3,
    ring: 7,
    tensors: [
      {
        name: "layer.0.weight",
        length: 13,
        buffers: {
          window: bytesOf(13, 1),
          codes: bytesOf(1, 2),
          stats: bytesOf(0, 3), // empty buffer
        },
      },
      { name: "bias", length: 0, buffers: {} },
      {
        name: "ünïcode",
        length: 5,
        buffers: { expAvg: bytesOf(20, 4), expAvgSq: bytesOf(7, 5) },
      },
    ],
  };
}

function smallState(): OptimizerState {
  return {
    optimizer: "Adam",
    config: { amsgrad: true },
    step: 1,
    calls: 1,
    skipped: 0,
    ring: 0,
    tensors: [{
      name: "w",
      length: 3,
      buffers: { m: bytesOf(5, 9), v: bytesOf(3, 10) },
    }],
  };
}

/** Rewrites the trailing CRC so a crafted change is judged on its own merits. */
function fixCrc(bytes: Uint8Array): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  view.setUint32(
    bytes.byteLength - 4,
    crc32(bytes.subarray(0, bytes.byteLength - 4)),
    true,
  );
  return bytes;
}

/** Replaces the JSON header (keeping the layout) and fixes the CRC. */
function withHeader(
  bytes: Uint8Array,
  edit: (h: Record<string, unknown>) => void,
): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hlen = view.getUint32(12, true);
  const h = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + hlen)));
  const dataStart = Math.ceil((16 + hlen) / 8) * 8;
  edit(h);
  const json = new TextEncoder().encode(JSON.stringify(h));
  const newStart = Math.ceil((16 + json.length) / 8) * 8;
  const rest = bytes.subarray(dataStart);
  const out = new Uint8Array(newStart + rest.length);
  out.set(bytes.subarray(0, 16));
  new DataView(out.buffer).setUint32(12, json.length, true);
  out.set(json, 16);
  out.set(rest, newStart);
  return fixCrc(out);
}

function throwsCheckpoint(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CheckpointError, `not a CheckpointError: ${e}`);
    assert.match(e.message, pattern);
    return true;
  });
}

Deno.test("round trip is bit-exact, header fields included", () => {
  const state = sampleState();
  const bytes = encodeCheckpoint(state);
  assert.deepEqual([...bytes.subarray(0, 8)], [...CHECKPOINT_MAGIC]);
  // Without parameters or metadata a checkpoint is still written as version 1.
  assert.equal(new DataView(bytes.buffer).getUint32(8, true), 1);
  assert.equal(CHECKPOINT_VERSION, 2);
  const back = decodeCheckpoint(bytes);
  assert.deepEqual(back, state);
  assert.ok(Object.is(back.config.lr, 1e-3 / 3));
  assert.equal(back.step, 2 ** 40 + 7);
  assert.equal(back.calls, 2 ** 53 - 1);
  assert.deepEqual(
    back.tensors.map((t) => Object.keys(t.buffers)),
    state.tensors.map((t) => Object.keys(t.buffers)),
  );
  // Encoding is deterministic: the same state gives the same bytes.
  assert.deepEqual(encodeCheckpoint(back), bytes);
});

Deno.test("decoded buffers are aligned copies that outlive the input", () => {
  const bytes = encodeCheckpoint(sampleState());
  const back = decodeCheckpoint(bytes);
  for (const t of back.tensors) {
    for (const b of Object.values(t.buffers)) {
      assert.notEqual(b.buffer, bytes.buffer);
      assert.equal(b.byteOffset, 0);
      assert.equal(b.buffer.byteLength, b.byteLength);
    }
  }
  const ea = back.tensors[2].buffers.expAvg;
  assert.equal(new Float32Array(ea.buffer).length, 5); // 4-byte viewable
  const before = ea.slice();
  bytes.fill(0);
  assert.deepEqual(ea, before);
});

Deno.test("decode accepts a subarray with an odd byte offset", () => {
  const bytes = encodeCheckpoint(sampleState());
  const host = new Uint8Array(bytes.length + 3);
  host.set(bytes, 3);
  assert.deepEqual(decodeCheckpoint(host.subarray(3)), sampleState());
});

Deno.test("every flipped byte of a small checkpoint is detected", () => {
  const bytes = encodeCheckpoint(smallState());
  assert.ok(bytes.length < 1024, `small checkpoint is ${bytes.length} bytes`);
  for (const mask of [0x01, 0x80, 0xff]) {
    for (let i = 0; i < bytes.length; i++) {
      const bad = bytes.slice();
      bad[i] ^= mask;
      assert.throws(
        () => decodeCheckpoint(bad),
        CheckpointError,
        `flip 0x${mask.toString(16)} at byte ${i} was not detected`,
      );
    }
  }
  decodeCheckpoint(bytes); // the original still decodes
});

Deno.test("flips in a dense random sample of a large checkpoint are detected", () => {
  const state = sampleState();
  state.tensors.push({
    name: "big",
    length: 16384,
    buffers: { window: bytesOf(65536, 11), codes: bytesOf(16385, 12) },
  });
  const bytes = encodeCheckpoint(state);
  const rnd = bytesOf(4 * 1500, 99);
  const view = new DataView(rnd.buffer);
  for (let k = 0; k < 1500; k++) {
    const i = view.getUint32(4 * k, true) % bytes.length;
    const bad = bytes.slice();
    bad[i] ^= 1 << (k % 8);
    assert.throws(
      () => decodeCheckpoint(bad),
      CheckpointError,
      `flip at ${i} missed`,
    );
  }
  // And the header and trailer regions exhaustively.
  for (
    const i of [
      ...Array(512).keys(),
      ...Array.from({ length: 16 }, (_, j) => bytes.length - 1 - j),
    ]
  ) {
    const bad = bytes.slice();
    bad[i] ^= 0x10;
    assert.throws(() => decodeCheckpoint(bad), CheckpointError);
  }
});

Deno.test("truncation at any length is reported as truncated", () => {
  const bytes = encodeCheckpoint(sampleState());
  for (const n of [0, 1, 7, 8, 15, 16, 19, 20, 40, 100]) {
    throwsCheckpoint(() => decodeCheckpoint(bytes.subarray(0, n)), /truncated/);
  }
  for (let n = bytes.length - 64; n < bytes.length; n++) {
    throwsCheckpoint(() => decodeCheckpoint(bytes.subarray(0, n)), /truncated/);
  }
});

Deno.test("trailing bytes after the checkpoint are rejected", () => {
  const bytes = encodeCheckpoint(smallState());
  const longer = new Uint8Array(bytes.length + 8);
  longer.set(bytes);
  throwsCheckpoint(
    () => decodeCheckpoint(longer),
    /8 unexpected trailing bytes/,
  );
});

Deno.test("wrong magic is not a microadam checkpoint", () => {
  const bytes = encodeCheckpoint(smallState());
  bytes.set(new TextEncoder().encode("PK\x03\x04ZIP!"), 0);
  throwsCheckpoint(
    () => decodeCheckpoint(fixCrc(bytes)),
    /not a microadam checkpoint/,
  );
  throwsCheckpoint(
    () => decodeCheckpoint(new TextEncoder().encode('{"json": "file"}    ')),
    /not a microadam checkpoint/,
  );
});

Deno.test("a future format version is rejected for its version, not its CRC", () => {
  const bytes = encodeCheckpoint(smallState());
  new DataView(bytes.buffer).setUint32(8, 3, true);
  fixCrc(bytes);
  throwsCheckpoint(
    () => decodeCheckpoint(bytes),
    /unsupported checkpoint format version 3: this build reads versions 1 to 2/,
  );
  new DataView(bytes.buffer).setUint32(8, 0, true);
  throwsCheckpoint(() => decodeCheckpoint(fixCrc(bytes)), /version 0/);
});

Deno.test("checksum mismatch says corrupt with expected and computed CRC", () => {
  const bytes = encodeCheckpoint(smallState());
  bytes[bytes.length - 6] ^= 0x40; // a data byte
  throwsCheckpoint(
    () => decodeCheckpoint(bytes),
    /corrupt: checksum mismatch \(expected 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}\)/,
  );
});

Deno.test("invalid header JSON with a valid CRC is reported as such", () => {
  const bytes = encodeCheckpoint(smallState());
  bytes[16] = "[".charCodeAt(0); // header starts with "{"
  throwsCheckpoint(
    () => decodeCheckpoint(fixCrc(bytes)),
    /header is not valid UTF-8 JSON/,
  );
  const bytes2 = encodeCheckpoint(smallState());
  bytes2[17] = 0xff; // invalid UTF-8
  throwsCheckpoint(() => decodeCheckpoint(fixCrc(bytes2)), /not valid UTF-8/);
  throwsCheckpoint(
    () =>
      decodeCheckpoint(
        withHeader(encodeCheckpoint(smallState()), (h) => {
          h.step = -1;
        }),
      ),
    /header invalid: step must be an integer >= 0, got -1/,
  );
  throwsCheckpoint(
    () =>
      decodeCheckpoint(
        withHeader(encodeCheckpoint(smallState()), (h) => {
          (h.config as Record<string, unknown>).amsgrad = null;
        }),
      ),
    /config "amsgrad"/,
  );
});

Deno.test("a buffer range out of bounds is reported", () => {
  const bytes = withHeader(encodeCheckpoint(smallState()), (h) => {
    const t = (h.tensors as { buffers: { byteLength: number }[] }[])[0];
    t.buffers[1].byteLength = 4096;
  });
  throwsCheckpoint(
    () => decodeCheckpoint(bytes),
    /buffer "v" range \[8, 4104\) is out of bounds/,
  );
});

Deno.test("a per-buffer checksum mismatch names the buffer", () => {
  const bytes = withHeader(encodeCheckpoint(smallState()), (h) => {
    const t = (h.tensors as { buffers: { crc32: number }[] }[])[0];
    t.buffers[0].crc32 ^= 1;
  });
  throwsCheckpoint(
    () => decodeCheckpoint(bytes),
    /tensor 0 \("w"\) buffer "m" checksum mismatch/,
  );
});

Deno.test("encode refuses values JSON cannot carry back exactly", () => {
  const s = smallState();
  s.step = 2 ** 53;
  throwsCheckpoint(() => encodeCheckpoint(s), /step/);
  const s2 = smallState();
  s2.config.lr = NaN;
  throwsCheckpoint(() => encodeCheckpoint(s2), /config "lr"/);
  const s3 = smallState();
  s3.ring = 1.5;
  throwsCheckpoint(() => encodeCheckpoint(s3), /ring/);
});

Deno.test("a buffer named __proto__ stays an own data property", () => {
  const s = smallState();
  s.tensors[0].buffers = Object.fromEntries([["__proto__", bytesOf(3, 1)]]);
  const back = decodeCheckpoint(encodeCheckpoint(s));
  assert.deepEqual(Object.keys(back.tensors[0].buffers), ["__proto__"]);
  assert.deepEqual(back, s);
});

async function tempFiles(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.filter((n) => n.includes(".tmp-")).sort();
}

Deno.test("saveCheckpoint atomically replaces an existing file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/opt.ckpt`;
    await Deno.writeTextFile(
      path,
      "old contents, much longer than ".repeat(100),
    );
    await saveCheckpoint(path, sampleState());
    assert.deepEqual(await loadCheckpoint(path), sampleState());
    const s = smallState();
    await saveCheckpoint(path, s);
    assert.deepEqual(await loadCheckpoint(path), s);
    assert.deepEqual(await Deno.readFile(path), encodeCheckpoint(s));
    assert.deepEqual(await tempFiles(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("failed saves keep the old file and leave no temp files", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/opt.ckpt`;
  const old = encodeCheckpoint(smallState());
  await Deno.writeFile(path, old);
  const rename = Deno.rename;
  const write = Deno.FsFile.prototype.write;
  try {
    // 1. The rename fails after the temp file was fully written and synced.
    Deno.rename = () => Promise.reject(new Error("simulated rename failure"));
    await assert.rejects(
      () => saveCheckpoint(path, sampleState()),
      (e: Error) => {
        assert.match(e.message, new RegExp(`could not save ${path}`));
        assert.match(e.message, /simulated rename failure/);
        return true;
      },
    );
    Deno.rename = rename;
    assert.deepEqual(await Deno.readFile(path), old);
    assert.deepEqual(await tempFiles(dir), []);

    // 2. The disk fills up halfway through the write.
    let calls = 0;
    Deno.FsFile.prototype.write = function (this: Deno.FsFile, p: Uint8Array) {
      if (calls++ > 0) {
        return Promise.reject(new Deno.errors.WriteZero("simulated ENOSPC"));
      }
      return write.call(this, p.subarray(0, 10));
    };
    await assert.rejects(
      () => saveCheckpoint(path, sampleState()),
      /could not save .*simulated ENOSPC/,
    );
    assert.equal(calls, 2);
    Deno.FsFile.prototype.write = write;
    assert.deepEqual(await Deno.readFile(path), old);
    assert.deepEqual(await tempFiles(dir), []);

    // 3. A real failure: renaming a file over a non-empty directory.
    const asDir = `${dir}/taken`;
    await Deno.mkdir(asDir);
    await Deno.writeTextFile(`${asDir}/keep.txt`, "keep");
    await assert.rejects(
      () => writeFileAtomic(asDir, new Uint8Array(16)),
      /could not save .*taken/,
    );
    assert.equal(await Deno.readTextFile(`${asDir}/keep.txt`), "keep");
    assert.deepEqual(await tempFiles(dir), []);

    // 4. The directory does not exist.
    await assert.rejects(
      () => writeFileAtomic(`${dir}/no/such/dir/x.ckpt`, new Uint8Array(1)),
      /could not save .*no\/such\/dir\/x\.ckpt/,
    );
    assert.deepEqual(await loadCheckpoint(path), smallState());
  } finally {
    Deno.rename = rename;
    Deno.FsFile.prototype.write = write;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadCheckpoint on a missing path says there is no checkpoint", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/missing.ckpt`;
    await assert.rejects(() => loadCheckpoint(path), (e: unknown) => {
      assert.ok(e instanceof CheckpointError);
      assert.equal(e.message, `no checkpoint at ${path}`);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadCheckpoint names the file when it is corrupt", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/bad.ckpt`;
    const bytes = encodeCheckpoint(smallState());
    bytes[30] ^= 1;
    await Deno.writeFile(path, bytes);
    await assert.rejects(() => loadCheckpoint(path), (e: unknown) => {
      assert.ok(e instanceof CheckpointError);
      assert.ok(e.message.startsWith(`${path}: `), e.message);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function expectedFor(state: OptimizerState): ExpectedState {
  return {
    optimizer: state.optimizer,
    config: { ...state.config },
    tensors: state.tensors.map((t) => ({
      name: t.name,
      named: true,
      length: t.length,
      buffers: Object.fromEntries(
        Object.entries(t.buffers).map(([k, v]) => [k, v.byteLength]),
      ),
    })),
  };
}

Deno.test("matchState accepts a decoded state and names each mismatch", () => {
  const state = decodeCheckpoint(encodeCheckpoint(sampleState()));
  matchState(state, expectedFor(sampleState()));

  const cases: [string, (e: ExpectedState) => void, RegExp][] = [
    [
      "optimizer",
      (e) => (e.optimizer = "AdamW"),
      /optimizer mismatch.*AdamW.*MicroAdam/,
    ],
    [
      "config value",
      (e) => (e.config.window = 20),
      /config mismatch on "window"/,
    ],
    [
      "config key added",
      (e) => (e.config.extra = 1),
      /config mismatch on "extra"/,
    ],
    [
      "config key missing",
      (e) => delete e.config.dtype,
      /config mismatch on "dtype"/,
    ],
    [
      "tensor count",
      (e) => e.tensors.pop(),
      /tensor count mismatch.*2 tensors.*3/,
    ],
    [
      "tensor name",
      (e) => (e.tensors[1].name = "bias2"),
      /tensor name mismatch: tensor 1 "bias2" is not in the state \(this optimizer has \["layer.0.weight", "bias2", "ünïcode"\], the state has \["layer.0.weight", "bias", "ünïcode"\]\)/,
    ],
    [
      "length",
      (e) => (e.tensors[2].length = 6),
      /tensor 2 "ünïcode" has 6 elements, the state's tensor "ünïcode" has 5/,
    ],
    [
      "buffer size",
      (e) => (e.tensors[0].buffers.window = 14),
      /buffer "window" should be 14 bytes, the state's tensor "layer.0.weight" has 13/,
    ],
    [
      "missing buffer",
      (e) => (e.tensors[1].buffers.m = 0),
      /tensor 1 "bias": state buffer "m" is missing from the state's tensor "bias"/,
    ],
  ];
  for (const [what, edit, pattern] of cases) {
    const e = expectedFor(sampleState());
    edit(e);
    assert.throws(() => matchState(state, e), (err: unknown) => {
      assert.ok(err instanceof CheckpointError, `${what}: ${err}`);
      assert.match(err.message, pattern, what);
      return true;
    });
  }
  const negative = { ...state, step: -1 };
  throwsCheckpoint(
    () => matchState(negative, expectedFor(sampleState())),
    /step: expected an integer >= 0/,
  );
});
