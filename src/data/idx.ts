/**
 * IDX files, the format of MNIST and Fashion-MNIST: a 4-byte magic number
 * (two zero bytes, a type code, the number of dimensions), the dimensions as
 * big-endian u32s, then the values. Only unsigned bytes (type 0x08) are read,
 * which is what both data sets hold. Files may be gzipped (detected by their
 * first bytes, whatever the name); `DecompressionStream` inflates them.
 *
 * @module
 */

import { DatasetError } from "../errors.ts";

/** An IDX array of unsigned bytes. */
export interface IdxArray {
  /** Dimensions, outermost first (e.g. `[count, 28, 28]`). */
  dims: number[];
  /** The values, row-major. */
  data: Uint8Array<ArrayBuffer>;
}

/** IDX type code of unsigned bytes. */
const UBYTE = 0x08;

const TYPE_NAMES: Record<number, string> = {
  0x08: "unsigned byte",
  0x09: "signed byte",
  0x0b: "i16",
  0x0c: "i32",
  0x0d: "f32",
  0x0e: "f64",
};

/**
 * Parses IDX bytes (not gzipped). `name` is used in error messages.
 *
 * @throws {DatasetError} Naming `name` and what is wrong: a bad magic
 * number, a type other than unsigned bytes, or a size that disagrees with
 * the dimensions.
 *
 * @example
 * ```ts
 * import { parseIdx } from "./idx.ts";
 * const bytes = new Uint8Array([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]);
 * console.log(parseIdx(bytes, "labels")); // { dims: [ 3 ], data: Uint8Array(3) [ 7, 8, 9 ] }
 * ```
 */
export function parseIdx(bytes: Uint8Array, name: string): IdxArray {
  if (bytes.byteLength < 4) {
    throw new DatasetError(
      `${name}: not an IDX file: ${bytes.byteLength} bytes, shorter than the 4-byte magic number`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, false);
  const type = bytes[2];
  const ndim = bytes[3];
  if (bytes[0] !== 0 || bytes[1] !== 0 || ndim === 0) {
    throw new DatasetError(
      `${name}: not an IDX file: magic number 0x${
        magic.toString(16).padStart(8, "0")
      } (expected 0x00000801 for labels or 0x00000803 for images: two zero bytes, a type code, a dimension count >= 1)`,
    );
  }
  if (type !== UBYTE) {
    throw new DatasetError(
      `${name}: IDX values of type 0x${type.toString(16).padStart(2, "0")} (${
        TYPE_NAMES[type] ?? "unknown"
      }); only unsigned bytes (0x08) are supported`,
    );
  }
  const headerBytes = 4 + 4 * ndim;
  if (bytes.byteLength < headerBytes) {
    throw new DatasetError(
      `${name}: truncated IDX header: ${ndim} dimensions need ${headerBytes} bytes, the file has ${bytes.byteLength}`,
    );
  }
  const dims: number[] = [];
  for (let i = 0; i < ndim; i++) dims.push(view.getUint32(4 + 4 * i, false));
  const count = dims.reduce((a, b) => a * b, 1);
  const have = bytes.byteLength - headerBytes;
  if (have !== count) {
    throw new DatasetError(
      `${name}: IDX size mismatch: dimensions [${
        dims.join(", ")
      }] need ${count} bytes of data, the file has ${have}${
        have < count ? " (truncated?)" : " (trailing bytes)"
      }`,
    );
  }
  return { dims, data: bytes.slice(headerBytes) };
}

/** Whether `bytes` start with the gzip magic bytes 1f 8b. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.byteLength >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/**
 * Inflates gzip bytes with `DecompressionStream`.
 *
 * @throws {DatasetError} Naming `name` when the stream is not valid gzip.
 *
 * @example
 * ```ts
 * import { gunzip } from "./idx.ts";
 * const gz = await new Response(new Blob([new Uint8Array([1, 2, 3])]).stream()
 *   .pipeThrough(new CompressionStream("gzip"))).bytes();
 * console.log(await gunzip(gz, "x.gz")); // Uint8Array(3) [ 1, 2, 3 ]
 * ```
 */
export async function gunzip(
  bytes: Uint8Array<ArrayBuffer>,
  name: string,
): Promise<Uint8Array<ArrayBuffer>> {
  try {
    const stream = new Blob([bytes]).stream().pipeThrough(
      new DecompressionStream("gzip"),
    );
    return await new Response(stream).bytes();
  } catch (e) {
    throw new DatasetError(
      `${name}: not valid gzip data (${(e as Error).message})`,
      { cause: e },
    );
  }
}

/**
 * Reads an IDX file, gzipped or not.
 *
 * @throws {DatasetError} When the file is missing or unreadable, not gzip
 * although it starts like gzip, or not valid IDX; the message names the path.
 *
 * @example
 * ```ts
 * import { readIdx } from "./idx.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeFile(`${dir}/l.idx`, new Uint8Array([0, 0, 8, 1, 0, 0, 0, 2, 4, 5]));
 * console.log((await readIdx(`${dir}/l.idx`)).data); // Uint8Array(2) [ 4, 5 ]
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readIdx(path: string): Promise<IdxArray> {
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound
      ? "no such file"
      : (e as Error).message;
    throw new DatasetError(`${path}: cannot read it (${why})`, { cause: e });
  }
  if (isGzip(bytes)) bytes = await gunzip(bytes, path);
  return parseIdx(bytes, path);
}
