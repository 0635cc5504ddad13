import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import type { CanonicalEvent } from '../src/core/events.ts';
import { binanceAdapter, binanceSpotProtocol } from '../src/feeds/binance.ts';
import { STATUS_CHANNEL, type RawFrame } from '../src/feeds/types.ts';
import { partPath, recordFeed, RecordingWriter } from '../src/cli/record.ts';
import { readRecords } from '../src/replay/formats.ts';
import { BinanceTestServer, startLiveClient, type ClientScript, type LiveClient } from './helpers/binance-server.ts';
import { startVigil, stop, tempDir, vigil } from './helpers/cli.ts';

const SYMBOLS = ['BTCUSDT', 'ETHUSDT'];
const servers: BinanceTestServer[] = [];
const clients: LiveClient[] = [];
afterEach(async () => {
  while (clients.length > 0) await clients.pop()!.stop();
  while (servers.length > 0) await servers.pop()!.close();
});

function env(server: BinanceTestServer, client: string): Record<string, string> {
  return { VIGIL_BINANCE_WS_URL: server.wsUrl(client), VIGIL_BINANCE_REST_URL: server.restUrl(client), VIGIL_CONFIG: '' };
}

async function framesOf(files: string[]): Promise<{ frames: RawFrame[]; skipped: string[]; malformed: number }> {
  const frames: RawFrame[] = [];
  const skipped: string[] = [];
  let malformed = 0;
  for (const f of files) {
    for await (const rec of readRecords(f)) {
      if (rec.type === 'frame') frames.push(rec.frame);
      else if (rec.type === 'skip') skipped.push(rec.why);
      else if (rec.type === 'malformed') malformed++;
    }
  }
  return { frames, skipped, malformed };
}

function normalizeAll(frames: RawFrame[]): CanonicalEvent[] {
  const n = binanceAdapter.createNormalizer(); // a replay: nobody listens to resync requests
  const events: CanonicalEvent[] = [];
  for (const f of frames) n.normalize(f, events);
  return events;
}

/**
 * Events without the fields that are reception times of the process that received the frame (the
 * recorder and the test's own feed are two processes on two connections): recvTs everywhere, and ts
 * where Binance sends no time so Vigil uses floor(recvTs) — spot bookTicker quotes, REST snapshots and
 * the connection's status events (book_synced takes its snapshot's ts). Everything else — prices,
 * sizes, ids, sequence numbers, venue times, reasons, order — must be equal.
 */
function comparable(ev: CanonicalEvent): Record<string, unknown> {
  const { recvTs: _r, ...rest } = ev as CanonicalEvent & { recvTs?: number };
  const fromRecvTs = ev.kind === 'quote' || ev.kind === 'status' || (ev.kind === 'book' && ev.snapshot);
  if (fromRecvTs) delete (rest as { ts?: number }).ts;
  return rest;
}

/**
 * Per symbol and kind, in order. Across symbols and kinds the interleaving depends on when each REST
 * snapshot response arrived relative to the WebSocket frames, which differs between two connections.
 */
function streams(events: CanonicalEvent[]): Record<string, Record<string, unknown>[]> {
  const out: Record<string, Record<string, unknown>[]> = {};
  for (const e of events) {
    const key = `${(e as { symbol: string }).symbol} ${e.kind}`;
    (out[key] ??= []).push(comparable(e));
  }
  return out;
}

describe('vigil record', () => {
  it('records a live session (frames, REST snapshots, status frames) that replays to exactly the live events', async () => {
    // Both clients: a forced disconnect on their first connection and a skipped depth diff (gap → resync) on the second.
    const script: ClientScript = {
      ticks: 320,
      kill: [{ conn: 0, step: 90 }],
      skip: [{ conn: 1, step: 160, symbol: 'ETHUSDT' }],
    };
    const server = await BinanceTestServer.start({ symbols: SYMBOLS, script: () => script });
    servers.push(server);
    const dir = tempDir('vigil-record-');
    const out = join(dir, 'rec', 'binance.jsonl.gz');
    const rec = startVigil(['record', '--feed', 'binance:btcusdt,ethusdt', '--out', out], env(server, 'rec'));
    const live = await startLiveClient(server, binanceAdapter, binanceSpotProtocol, ['btcusdt', 'ethusdt'], 'live');
    clients.push(live);
    await live.settled(60_000);
    // The recorder's last connection played its script too; give its last frames time to arrive, then SIGINT.
    const t0 = Date.now();
    while (!(server.connectionsOf('rec').length === 2 && server.current('rec')!.done) && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 500));
    expect(await stop(rec.child, 'SIGINT')).toBe(0);
    expect(rec.output()).toMatch(/SIGINT: stopping/);
    expect(rec.output()).toMatch(/wrote \d+ frames/);

    // A complete gzip stream (gunzipSync throws on a missing trailer), one meta line first.
    const text = gunzipSync(readFileSync(out)).toString('utf8');
    expect(text.endsWith('\n')).toBe(true);
    const first = JSON.parse(text.slice(0, text.indexOf('\n'))) as { v: number; meta: { feeds: unknown; part: number } };
    expect(first).toMatchObject({ v: 1, meta: { feeds: { binance: ['btcusdt', 'ethusdt'] }, part: 1 } });

    const { frames, skipped, malformed } = await framesOf([out]);
    expect(skipped).toEqual(['meta']);
    expect(malformed).toBe(0);
    for (const f of frames) expect(f.source).toBe('binance');

    // The same server session for both: the recorder wrote exactly the frames the live feed yielded.
    const ws = (fs: RawFrame[]) => fs.filter((f) => f.channel === undefined).map((f) => f.data);
    expect(ws(frames)).toEqual(ws(live.frames));
    expect(ws(frames)).toEqual(server.connectionsOf('rec').flatMap((c) => c.sent));
    const rest = (fs: RawFrame[]) => fs.filter((f) => f.channel?.startsWith('rest:')).map((f) => `${f.channel} ${f.data}`).sort();
    expect(rest(frames)).toEqual(rest(live.frames));
    expect(frames.filter((f) => f.channel?.startsWith('rest:'))).toHaveLength(5); // 2 per connection + the resync
    const status = (fs: RawFrame[]) => fs.filter((f) => f.channel === STATUS_CHANNEL).map((f) => f.data);
    expect(status(frames)).toEqual(status(live.frames));
    expect(status(frames).map((d) => (JSON.parse(d) as { status: string }).status)).toEqual(['connected', 'disconnected', 'connected']);

    // Replaying the recording gives the live normalizer's events.
    const replayed = normalizeAll(frames);
    expect(replayed).toHaveLength(live.events.length);
    expect(streams(replayed)).toEqual(streams(live.events));
    const kinds = (evs: CanonicalEvent[]) => evs.map((e) => (e.kind === 'status' ? `${(e as { symbol: string }).symbol}:${e.status}` : '')).filter(Boolean);
    expect(kinds(replayed)).toEqual(
      expect.arrayContaining(['ETH-USDT:book_reset', 'BTC-USDT:disconnected', 'ETH-USDT:disconnected', 'BTC-USDT:book_synced']),
    );
    // The session had what it should: a reconnect and exactly one resync (ETH), in both.
    expect(live.normalizer.bookReport()).toMatchObject({ 'ETH-USDT': { resyncs: 1 }, 'BTC-USDT': { resyncs: 0 } });
    expect(server.requestsOf('rec').map((r) => r.symbol).slice(4)).toEqual(['ETHUSDT']);
  });

  it('in one process: replaying the recording gives exactly the events the live normalizer produced while recording, receive times included', async () => {
    const script: ClientScript = { ticks: 300, kill: [{ conn: 0, step: 100 }], skip: [{ conn: 1, step: 150, symbol: 'BTCUSDT' }] };
    const server = await BinanceTestServer.start({ symbols: SYMBOLS, script: () => script });
    servers.push(server);
    const out = join(tempDir('vigil-record-exact-'), 'session.jsonl.gz');
    const writer = new RecordingWriter({ out });
    const ctrl = new AbortController();
    const feed = binanceAdapter.connect!({ symbols: ['btcusdt', 'ethusdt'], wsUrl: server.wsUrl('x'), restUrl: server.restUrl('x'), signal: ctrl.signal });
    const live: CanonicalEvent[] = [];
    const recording = recordFeed(binanceAdapter, feed, writer, (evs) => live.push(...evs));
    const t0 = Date.now();
    while (!(server.connectionsOf('x').length === 2 && server.current('x')!.done) && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 500));
    ctrl.abort();
    const result = await recording;
    await writer.close();
    expect(result.malformed).toBe(0);
    expect(result.books).toMatchObject({ 'BTC-USDT': { resyncs: 1 }, 'ETH-USDT': { resyncs: 0 } });

    const { frames } = await framesOf([out]);
    const replayed = normalizeAll(frames);
    expect(live.length).toBeGreaterThan(500);
    // Everything, in order, with recvTs and ts: the recording is the live session.
    expect(replayed).toEqual(live);
  });

  it('rotates by size into several complete gzip files that replay in order to the whole session; --duration ends it', async () => {
    // ~2,500 ticks: a few hundred KB of frames, ~100 KB gzip (the compressor emits output in blocks of
    // tens of KB, the granularity of size rotation).
    const server = await BinanceTestServer.start({ symbols: SYMBOLS, tickMs: 1, script: () => ({ ticks: 2_500 }) });
    servers.push(server);
    const dir = tempDir('vigil-record-');
    const out = join(dir, 'binance.jsonl.gz');
    const r = await vigil(['record', '--feed', 'binance:btcusdt,ethusdt', '--out', out, '--rotate-mb', '0.02', '--duration', '12'], env(server, 'rot'));
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/wrote \d+ frames/);
    const files = readdirSync(dir).sort();
    expect(files.length).toBeGreaterThanOrEqual(3);
    expect(files).toEqual(files.map((_, i) => `binance-${String(i + 1).padStart(4, '0')}.jsonl.gz`));
    const paths = files.map((f) => join(dir, f));
    for (const [i, p] of paths.entries()) {
      const text = gunzipSync(readFileSync(p)).toString('utf8'); // throws if a trailer is missing
      expect(text.endsWith('\n')).toBe(true);
      expect(JSON.parse(text.slice(0, text.indexOf('\n')))).toMatchObject({ v: 1, meta: { part: i + 1 } });
      if (i < paths.length - 1) expect(readFileSync(p).length).toBeGreaterThanOrEqual(0.02 * 1024 * 1024);
    }
    const { frames, skipped, malformed } = await framesOf(paths);
    expect(skipped).toHaveLength(files.length); // one meta line each
    expect(malformed).toBe(0);
    expect(frames.filter((f) => f.channel === undefined).map((f) => f.data)).toEqual(server.current('rot')!.sent);
    expect(server.current('rot')!.done).toBe(true);
    // The parts in order replay like one file: books in sync at the end, equal to the server's.
    const events = normalizeAll(frames);
    expect(events.filter((e) => e.kind === 'status' && e.status === 'book_synced')).toHaveLength(2);
    expect(events.filter((e) => e.kind === 'status' && e.status === 'book_reset')).toHaveLength(0);
  });

  it('rotates by time', async () => {
    const server = await BinanceTestServer.start({ symbols: SYMBOLS, tickMs: 10, script: () => ({ ticks: 400 }) });
    servers.push(server);
    const dir = tempDir('vigil-record-');
    const r = await vigil(['record', '--feed', 'binance:btcusdt', '--out', join(dir, 'r.gz'), '--rotate-minutes', '0.01', '--duration', '5'], env(server, 'time'));
    expect(r.code).toBe(0);
    const files = readdirSync(dir).sort();
    // 0.6 s per file while frames flow (about 4 s of script after start-up).
    expect(files.length).toBeGreaterThanOrEqual(3);
    expect(files[0]).toBe('r-0001.gz');
    const starts = files.map((f) => Date.parse((JSON.parse(gunzipSync(readFileSync(join(dir, f))).toString('utf8').split('\n')[0]!) as { meta: { startedAt: string } }).meta.startedAt));
    for (let i = 1; i < starts.length; i++) expect(starts[i]! - starts[i - 1]!).toBeGreaterThanOrEqual(600);
  });

  it('names parts before the first dot, refuses to overwrite, and rejects bad arguments', async () => {
    expect(partPath('rec/binance.jsonl.gz', 1)).toBe('rec/binance-0001.jsonl.gz');
    expect(partPath('/x/y/rec', 12)).toBe('/x/y/rec-0012');
    expect(partPath('.hidden.gz', 2)).toBe('.hidden-0002.gz');
    const dir = tempDir('vigil-record-');
    const existing = join(dir, 'old.jsonl.gz');
    writeFileSync(existing, 'precious');
    const r = await vigil(['record', '--feed', 'binance:btcusdt', '--out', existing, '--duration', '1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/EEXIST/);
    expect(readFileSync(existing, 'utf8')).toBe('precious');
    expect((await vigil(['record', '--out', join(dir, 'a.gz')])).code).toBe(2);
    expect((await vigil(['record', '--feed', 'binance:btcusdt'])).code).toBe(2);
    expect((await vigil(['record', '--feed', 'binance:btcusdt', '--out', join(dir, 'b.gz'), '--rotate-mb', '0'])).stderr).toMatch(/--rotate-mb: expected a positive number/);
    const help = await vigil(['record', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/binance-0001\.jsonl\.gz/);
    expect((await vigil(['--help'])).stdout).toMatch(/record/);
  });
});
