// The jdenticon side of the gen-avatar benchmark (run by main.go):
//   node render.js N SIZE
// renders N PNGs of SIZE pixels with jdenticon.toPng, seeds "user-<i>@example.com",
// after a warm-up, and prints {"avatars":N,"seconds":S,"bytes":B,"sample":"<base64 PNG>"}.
"use strict";
const jdenticon = require("jdenticon");

const n = parseInt(process.argv[2], 10);
const size = parseInt(process.argv[3], 10);
if (!(n > 0 && size > 0)) {
  console.error("usage: node render.js N SIZE");
  process.exit(2);
}
const seed = (i) => `user-${i}@example.com`;

// Warm-up, so the JIT has compiled the renderer before the clock starts.
for (let i = 0; i < Math.min(n, 200); i++) jdenticon.toPng(seed(i), size);

let bytes = 0;
const start = process.hrtime.bigint();
for (let i = 0; i < n; i++) bytes += jdenticon.toPng(seed(i), size).length;
const seconds = Number(process.hrtime.bigint() - start) / 1e9;

const sample = jdenticon.toPng(seed(0), size).toString("base64");
console.log(JSON.stringify({ avatars: n, seconds, bytes, sample }));
