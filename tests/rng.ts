/** Seeded PRNG shared by the tests (mulberry32), so a failure can be replayed. */
export { rng } from "../src/numeric/rng.ts";
