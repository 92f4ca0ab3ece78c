/** src/checkpoint/format.ts: round trips, and every kind of damage detected and named. */

import assert from "node:assert/strict";
import { CheckpointError } from "../src/errors.ts";
import {
  CHECKPOINT_MAGIC,
  CHECKPOINT_VERSION,
  decodeCheckpoint,
  encodeCheckpoint,
} from "../src/checkpoint/format.ts";
import {
  bytesOf,
  fixCrc,
  sampleState,
  smallState,
  throwsCheckpoint,
  withHeader,
} from "./checkpoint_states.ts";

Deno.test("round trip is bit-exact, header fields included", () => {
  const state = sampleState();
  const bytes = encodeCheckpoint(state);
  assert.deepEqual([...bytes.subarray(0, 8)], [...CHECKPOINT_MAGIC]);
  assert.equal(new DataView(bytes.buffer).getUint32(8, true), 1);
  // Without parameters or metadata a checkpoint is still written as version 1.
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
