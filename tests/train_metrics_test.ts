/**
 * src/train/metrics.ts: one JSON line per record, fields in insertion order;
 * opening appends to what is there; each line is in the file (seen by
 * another reader) as soon as `write` resolves; `truncateTo` cuts a resumed
 * run's file back to the checkpoint's byte count, in bytes, not characters;
 * a bad `truncateTo` is an `InvalidOptionError` before anything is touched.
 */

import assert from "node:assert/strict";
import { InvalidOptionError } from "../src/errors.ts";
import { MetricsWriter } from "../src/train/metrics.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "metrics_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("metrics: one JSON line per record, keys in insertion order, non-finite numbers as null", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/m.jsonl`;
    const m = await MetricsWriter.open(path);
    assert.equal(m.path, path);
    await m.write({ step: 50, epoch: 1, loss: 0.25, optimizer: "adamw" });
    await m.write({ z: 1, a: [1, 2], nested: { b: true } });
    await m.write({ loss: NaN, accuracy: Infinity, seed: 3 });
    m.close();
    assert.equal(
      await Deno.readTextFile(path),
      '{"step":50,"epoch":1,"loss":0.25,"optimizer":"adamw"}\n' +
        '{"z":1,"a":[1,2],"nested":{"b":true}}\n' +
        '{"loss":null,"accuracy":null,"seed":3}\n',
    );
  });
});

Deno.test("metrics: each line is in the file when write resolves, before close", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/m.jsonl`;
    const m = await MetricsWriter.open(path);
    try {
      assert.equal(await Deno.readTextFile(path), "");
      await m.write({ step: 1 });
      assert.equal(await Deno.readTextFile(path), '{"step":1}\n');
      await m.write({ step: 2 });
      assert.equal(
        await Deno.readTextFile(path),
        '{"step":1}\n{"step":2}\n',
      );
    } finally {
      m.close();
    }
  });
});

Deno.test("metrics: open appends to an existing file; size() counts bytes", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/m.jsonl`;
    await Deno.writeTextFile(path, '{"old":1}\n');
    const m = await MetricsWriter.open(path);
    assert.equal(await m.size(), 10);
    await m.write({ name: "é€" }); // 2 + 3 bytes in UTF-8
    const line = '{"name":"é€"}\n';
    assert.equal(line.length, 14);
    assert.equal(await m.size(), 10 + 14 + 3);
    m.close();
    assert.equal(await Deno.readTextFile(path), '{"old":1}\n' + line);
  });
});

Deno.test("metrics: truncateTo drops what a resumed run rewrites, in bytes; a shorter file stays", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/m.jsonl`;
    const a = await MetricsWriter.open(path);
    await a.write({ step: 1, note: "ü" });
    await a.write({ step: 2, note: "ü" });
    const atCheckpoint = await a.size(); // what train.ts stores
    await a.write({ step: 3, note: "lost on resume" });
    a.close();

    const b = await MetricsWriter.open(path, atCheckpoint);
    assert.equal(await b.size(), atCheckpoint);
    await b.write({ step: 3, note: "again" });
    b.close();
    assert.deepEqual(
      (await Deno.readTextFile(path)).split("\n"),
      [
        '{"step":1,"note":"ü"}',
        '{"step":2,"note":"ü"}',
        '{"step":3,"note":"again"}',
        "",
      ],
    );

    // A file shorter than truncateTo (or missing) is kept and appended to.
    const c = await MetricsWriter.open(path, 1_000_000);
    await c.write({ step: 4 });
    c.close();
    assert.match(await Deno.readTextFile(path), /"again"\}\n\{"step":4\}\n$/);
    const fresh = `${dir}/new.jsonl`;
    const d = await MetricsWriter.open(fresh, 0);
    await d.write({ step: 1 });
    d.close();
    assert.equal(await Deno.readTextFile(fresh), '{"step":1}\n');

    // truncateTo 0 empties the file.
    const e = await MetricsWriter.open(path, 0);
    assert.equal(await e.size(), 0);
    e.close();
    assert.equal(await Deno.readTextFile(path), "");
  });
});

Deno.test("metrics: a bad truncateTo is an InvalidOptionError and creates no file", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/m.jsonl`;
    for (
      const [bad, shown] of [
        [-1, "-1"],
        [1.5, "1.5"],
        [NaN, "NaN"],
        [Infinity, "Infinity"],
      ] as const
    ) {
      await assert.rejects(
        MetricsWriter.open(path, bad),
        (e: unknown) => {
          assert.ok(e instanceof InvalidOptionError, `${e}`);
          assert.equal(
            e.message,
            `truncateTo: expected a byte count (an integer >= 0), got ${shown}`,
          );
          return true;
        },
      );
    }
    await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
  });
});
