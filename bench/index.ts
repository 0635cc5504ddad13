/** `npm run bench`: prints one table and writes the same figures as JSON (bench/results.json). */
import { writeFileSync } from 'node:fs';
import { benchFeeds } from './feeds.ts';

const n = (x: number) => x.toLocaleString('en-US');
const started = Date.now();
const feeds = await benchFeeds();

const header = ['venue', 'input', 'frames', 'events', 'JSON.parse frames/s', 'normalize frames/s', 'ratio'];
const rows = feeds.map((r) => [r.venue, r.input, n(r.frames), n(r.events), n(r.jsonParseFramesPerSec), n(r.normalizeFramesPerSec), `${(r.ratio * 100).toFixed(1)}%`]);
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
console.log('parse + normalize, per venue (ratio = share of plain JSON.parse throughput on the same frames)');
console.log(line(header));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const r of rows) console.log(line(r));

const results = { date: new Date().toISOString(), node: process.version, feeds };
writeFileSync('bench/results.json', `${JSON.stringify(results, null, 2)}\n`);
console.log(`\nwritten bench/results.json in ${((Date.now() - started) / 1000).toFixed(1)} s`);
