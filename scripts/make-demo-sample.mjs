#!/usr/bin/env node
// Builds replays/demo-binance-btcusdt.jsonl.gz, the sample `vigil run` replays when no feed is
// configured: the real Binance BTCUSDT trades and bookTicker frames of 2024-08-08 23:57:20–23:59:30 UTC
// from the hftbacktest capture in ../shared (MIT), in Vigil's recording format. The slice holds the
// capture's sharpest one-second moves (23:57:52, 23:58:22, 23:58:35, 23:59:21) after 30 s of warm-up.
// Depth diffs are left out: the slice has no matching REST snapshot to build a book from.
import { createReadStream, createWriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { createGunzip, createGzip } from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';

const src = process.argv[2] ?? '../shared/data/exchange_raw/hftbacktest/spot_btcusdt_20240808.gz';
const out = process.argv[3] ?? 'replays/demo-binance-btcusdt.jsonl.gz';
const from = Date.UTC(2024, 7, 8, 23, 57, 20);
const to = Date.UTC(2024, 7, 8, 23, 59, 30);

async function* lines() {
  const rl = createInterface({ input: createReadStream(src).pipe(createGunzip()), crlfDelay: Infinity });
  for await (const line of rl) {
    const sp = line.indexOf(' ');
    if (sp < 0) continue;
    const ns = line.slice(0, sp);
    const data = line.slice(sp + 1);
    const recvTs = Number(ns.slice(0, -6)) + Number(ns.slice(-6)) / 1e6;
    if (recvTs < from || recvTs >= to) continue;
    if (!data.includes('@trade') && !data.includes('@bookTicker')) continue;
    yield `${JSON.stringify({ v: 1, recvTs, source: 'binance', data })}\n`;
  }
}
await pipeline(Readable.from(lines()), createGzip({ level: 9 }), createWriteStream(out));
console.log(`wrote ${out}`);
