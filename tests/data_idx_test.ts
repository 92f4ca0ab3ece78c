/**
 * src/data/idx.ts, src/data/fashion_mnist.ts and src/data/images.ts: IDX
 * files written here (plain and gzipped) load; broken ones (bad magic, other
 * types, truncated, trailing bytes, bad gzip, swapped files, mismatched
 * counts, labels past 9, a missing file) throw a DatasetError naming the
 * file and the problem. One test reads the system's Fashion-MNIST when it is
 * installed.
 */

import assert from "node:assert/strict";
import { DatasetError } from "../src/errors.ts";
import { gunzip, parseIdx, readIdx } from "../src/data/idx.ts";
import {
  FASHION_MNIST_DIR,
  hasFashionMnist,
  loadFashionMnist,
} from "../src/data/fashion_mnist.ts";
import { pixelStats, subset } from "../src/data/images.ts";
import { syntheticImageData } from "../src/data/synthetic.ts";

/** IDX bytes: magic 0x0000TTNN, big-endian dimensions, then the data. */
function idx(
  dims: number[],
  data: Uint8Array,
  type = 0x08,
): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const view = new DataView(out.buffer);
  out[2] = type;
  out[3] = dims.length;
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

async function gzip(
  bytes: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array<ArrayBuffer>> {
  const stream = new Blob([bytes]).stream().pipeThrough(
    new CompressionStream("gzip"),
  );
  return await new Response(stream).bytes();
}

function throwsData(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof DatasetError, `not a DatasetError: ${e}`);
    assert.match(e.message, pattern);
    return true;
  });
}

async function rejectsData(
  p: Promise<unknown>,
  pattern: RegExp,
): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof DatasetError, `not a DatasetError: ${e}`);
    assert.match(e.message, pattern);
    return true;
  });
}

Deno.test("parseIdx: labels and images of unsigned bytes", () => {
  const labels = parseIdx(idx([3], new Uint8Array([7, 0, 9])), "l");
  assert.deepEqual(labels.dims, [3]);
  assert.deepEqual([...labels.data], [7, 0, 9]);
  const pixels = Uint8Array.from({ length: 2 * 28 * 28 }, (_, i) => i % 256);
  const images = parseIdx(idx([2, 28, 28], pixels), "i");
  assert.deepEqual(images.dims, [2, 28, 28]);
  assert.deepEqual(images.data, pixels);
});

Deno.test("parseIdx: broken files name the file and the problem", () => {
  throwsData(
    () => parseIdx(new Uint8Array([0, 0]), "short.idx"),
    /short\.idx: not an IDX file: 2 bytes/,
  );
  const bad = idx([1], new Uint8Array([1]));
  bad[0] = 0x50; // e.g. a PNG or text file
  throwsData(
    () => parseIdx(bad, "x.idx"),
    /x\.idx: not an IDX file: magic number 0x50000801/,
  );
  throwsData(
    () => parseIdx(idx([1], new Uint8Array(4), 0x0d), "f.idx"),
    /f\.idx: IDX values of type 0x0d \(f32\); only unsigned bytes/,
  );
  throwsData(
    () =>
      parseIdx(idx([4, 28, 28], new Uint8Array(0)).subarray(0, 10), "h.idx"),
    /h\.idx: truncated IDX header: 3 dimensions need 16 bytes, the file has 10/,
  );
  throwsData(
    () => parseIdx(idx([5], new Uint8Array(4)), "t.idx"),
    /t\.idx: IDX size mismatch: dimensions \[5\] need 5 bytes of data, the file has 4 \(truncated\?\)/,
  );
  throwsData(
    () => parseIdx(idx([3], new Uint8Array(4)), "x.idx"),
    /need 3 bytes of data, the file has 4 \(trailing bytes\)/,
  );
  const zeroDims = idx([], new Uint8Array(0));
  throwsData(() => parseIdx(zeroDims, "z.idx"), /not an IDX file/);
});

Deno.test("readIdx: gzipped and plain files; missing files and bad gzip are DatasetErrors naming the path", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const raw = idx([2], new Uint8Array([3, 4]));
    await Deno.writeFile(`${dir}/a.idx`, raw);
    await Deno.writeFile(`${dir}/a.idx.gz`, await gzip(raw));
    assert.deepEqual(
      (await readIdx(`${dir}/a.idx`)).data,
      new Uint8Array([3, 4]),
    );
    assert.deepEqual(
      (await readIdx(`${dir}/a.idx.gz`)).data,
      new Uint8Array([3, 4]),
    );
    await rejectsData(
      readIdx(`${dir}/none.gz`),
      /none\.gz: cannot read it \(no such file\)/,
    );
    const broken = (await gzip(raw)).slice(0, 12); // gzip magic, stream cut short
    await Deno.writeFile(`${dir}/cut.gz`, broken);
    await rejectsData(readIdx(`${dir}/cut.gz`), /cut\.gz: not valid gzip data/);
    await rejectsData(
      gunzip(new Uint8Array([0x1f, 0x8b, 1, 2, 3]), "tiny.gz"),
      /tiny\.gz: not valid gzip/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Writes a small Fashion-MNIST folder; `edit` may break one file. */
async function writeSet(
  dir: string,
  edit: (name: string, parts: { dims: number[]; data: Uint8Array }) => void =
    () => {},
): Promise<void> {
  const files: Record<string, { dims: number[]; data: Uint8Array }> = {
    "train-images-idx3-ubyte": {
      dims: [6, 28, 28],
      data: new Uint8Array(6 * 784).map((_, i) => i % 251),
    },
    "train-labels-idx1-ubyte": {
      dims: [6],
      data: new Uint8Array([0, 1, 2, 9, 8, 7]),
    },
    "t10k-images-idx3-ubyte": {
      dims: [2, 28, 28],
      data: new Uint8Array(2 * 784).fill(200),
    },
    "t10k-labels-idx1-ubyte": { dims: [2], data: new Uint8Array([5, 4]) },
  };
  for (const [name, parts] of Object.entries(files)) {
    edit(name, parts);
    await Deno.writeFile(
      `${dir}/${name}.gz`,
      await gzip(idx(parts.dims, parts.data)),
    );
  }
}

Deno.test("loadFashionMnist: a valid folder loads; each broken file is named with what is wrong", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeSet(dir);
    assert.ok(await hasFashionMnist(dir));
    const data = await loadFashionMnist(dir);
    assert.equal(data.train.count, 6);
    assert.equal(data.test.count, 2);
    assert.deepEqual([...data.train.labels], [0, 1, 2, 9, 8, 7]);
    assert.equal(data.train.images[785], 785 % 251);
    assert.equal(data.synthetic, false);

    const cases: [
      string,
      (n: string, p: { dims: number[]; data: Uint8Array }) => void,
      RegExp,
    ][] = [
      ["label 10", (n, p) => {
        if (n === "train-labels-idx1-ubyte") p.data[3] = 10;
      }, /train-labels-idx1-ubyte\.gz: label 10 at index 3 is outside 0\.\.9/],
      ["count mismatch", (n, p) => {
        if (n === "t10k-labels-idx1-ubyte") {
          p.dims = [3];
          p.data = new Uint8Array(3);
        }
      }, /t10k-labels-idx1-ubyte\.gz: 3 labels for the 2 images/],
      ["image size", (n, p) => {
        if (n === "train-images-idx3-ubyte") {
          p.dims = [6, 32, 32];
          p.data = new Uint8Array(6 * 1024);
        }
      }, /train-images-idx3-ubyte\.gz: expected 28×28 images, got 32×32/],
      [
        "swapped",
        (n, p) => {
          if (n === "t10k-images-idx3-ubyte") {
            p.dims = [2];
            p.data = new Uint8Array(2);
          }
        },
        /t10k-images-idx3-ubyte\.gz: expected images of 3 dimensions .* \(is it a labels file\?\)/,
      ],
      ["truncated", (n, p) => {
        if (n === "train-images-idx3-ubyte") p.data = p.data.subarray(0, 100);
      }, /train-images-idx3-ubyte\.gz: IDX size mismatch/],
    ];
    for (const [what, edit, pattern] of cases) {
      const sub = `${dir}/${what.replaceAll(" ", "_")}`;
      await Deno.mkdir(sub);
      await writeSet(sub, edit);
      await rejectsData(loadFashionMnist(sub), pattern);
    }
    await Deno.remove(`${dir}/t10k-labels-idx1-ubyte.gz`);
    assert.equal(await hasFashionMnist(dir), false);
    await rejectsData(
      loadFashionMnist(dir),
      /Fashion-MNIST not found: .*t10k-labels-idx1-ubyte\.gz .* does not exist\. Install it with `apt-get install dataset-fashion-mnist`/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "the system's Fashion-MNIST (when installed): 60,000 + 10,000 images, 6,000 and 1,000 per class, pixel statistics",
  ignore: !(await hasFashionMnist()),
  async fn() {
    const data = await loadFashionMnist(FASHION_MNIST_DIR);
    assert.equal(data.train.count, 60000);
    assert.equal(data.test.count, 10000);
    const perClass = (labels: Uint8Array) => {
      const h = new Array(10).fill(0);
      for (const l of labels) h[l]++;
      return h;
    };
    assert.deepEqual(perClass(data.train.labels), new Array(10).fill(6000));
    assert.deepEqual(perClass(data.test.labels), new Array(10).fill(1000));
    // Published statistics of the training pixels: mean 0.2860, std 0.3530.
    const { mean, std } = pixelStats(data.train);
    assert.ok(
      Math.abs(mean - 0.2860) < 1e-4 && Math.abs(std - 0.3530) < 1e-4,
      `${mean} ${std}`,
    );
  },
});

Deno.test("synthetic data: deterministic per seed, labels in range, and subsets keep the first samples", () => {
  const a = syntheticImageData({ train: 200, test: 50, seed: 3 });
  const b = syntheticImageData({ train: 200, test: 50, seed: 3 });
  const c = syntheticImageData({ train: 200, test: 50, seed: 4 });
  assert.deepEqual(a.train.images, b.train.images);
  assert.notDeepEqual(a.train.images, c.train.images);
  assert.ok(a.train.labels.every((l) => l < 10));
  assert.equal(new Set(a.train.labels).size, 10);
  const s = subset(a.train, 20);
  assert.equal(s.count, 20);
  assert.deepEqual(s.labels, a.train.labels.subarray(0, 20));
  assert.equal(subset(a.train, 1000), a.train);
  assert.throws(
    () => syntheticImageData({ train: 0 }),
    /train: expected an image count >= 1/,
  );
});
