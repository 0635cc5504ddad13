/**
 * `npm run bench`: prints one table per section and writes the same figures as JSON (bench/results.json).
 * `npm run bench -- feeds detectors` runs only the named sections.
 */
import { writeFileSync } from 'node:fs';
import { detectorsSection } from './detectors.ts';
import { benchFeeds } from './feeds.ts';
import { kafkaSection } from './kafka.ts';
import { printSection, type BenchSection, fmtInt, fmtPct } from './table.ts';

async function feedsSection(): Promise<BenchSection> {
  const feeds = await benchFeeds();
  return {
    id: 'feeds',
    title: 'parse + normalize, per venue (ratio = share of plain JSON.parse throughput on the same frames)',
    header: ['venue', 'input', 'frames', 'events', 'JSON.parse frames/s', 'normalize frames/s', 'ratio'],
    leftColumns: 2,
    rows: feeds.map((r) => [r.venue, r.input, fmtInt(r.frames), fmtInt(r.events), fmtInt(r.jsonParseFramesPerSec), fmtInt(r.normalizeFramesPerSec), fmtPct(r.ratio)]),
    json: feeds,
  };
}

/** Sections in the order they run; each is a module of its own (bench/<id>.ts). */
const SECTIONS: Record<string, () => Promise<BenchSection | BenchSection[]>> = {
  feeds: feedsSection,
  detectors: detectorsSection,
  kafka: kafkaSection,
};

const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
for (const w of wanted) if (!(w in SECTIONS)) throw new Error(`unknown bench section "${w}" (known: ${Object.keys(SECTIONS).join(', ')})`);
const started = Date.now();
const results: Record<string, unknown> = { date: new Date().toISOString(), node: process.version };
for (const [id, run] of Object.entries(SECTIONS)) {
  if (wanted.length > 0 && !wanted.includes(id)) continue;
  const out = await run();
  for (const s of Array.isArray(out) ? out : [out]) {
    printSection(s);
    results[s.id] = s.json;
  }
}
writeFileSync('bench/results.json', `${JSON.stringify(results, null, 2)}\n`);
console.log(`\nwritten bench/results.json in ${((Date.now() - started) / 1000).toFixed(1)} s`);
process.exit(0); // sections may leave clients (Kafka, Redis) with sockets in their teardown
