import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_KEYS, loadConfig } from '../src/core/config.ts';

const tmp = mkdtempSync(join(tmpdir(), 'vigil-config-'));
function file(name: string, content: string): string {
  const p = join(tmp, name);
  writeFileSync(p, content);
  return p;
}

describe('config', () => {
  it('has defaults for an empty environment', () => {
    const c = loadConfig({});
    expect(c.PORT).toBe(8080);
    expect(c.VIGIL_DATA_DIR).toBe('./data');
    expect(c.CLICKHOUSE_URL).toBeUndefined();
    expect(c.VIGIL_DEMO).toBe(true);
    expect(c.feeds).toEqual([]);
    expect(c.detectors).toEqual({});
  });

  it('reads and coerces the environment', () => {
    const c = loadConfig({ PORT: '9090', VIGIL_DEMO: 'false', CLICKHOUSE_URL: 'http://ch:8123', VIGIL_FEEDS: 'binance:btcusdt,ethusdt; binance:solusdt' });
    expect(c.PORT).toBe(9090);
    expect(c.VIGIL_DEMO).toBe(false);
    expect(c.CLICKHOUSE_URL).toBe('http://ch:8123');
    expect(c.feeds).toEqual([
      { venue: 'binance', symbols: ['btcusdt', 'ethusdt'] },
      { venue: 'binance', symbols: ['solusdt'] },
    ]);
  });

  it.each([
    ['PORT', 'abc', /PORT: expected a TCP port/],
    ['PORT', '70000', /PORT/],
    ['CLICKHOUSE_URL', 'ftp://x', /CLICKHOUSE_URL: expected an http\(s\) URL/],
    ['VIGIL_DEMO', 'maybe', /VIGIL_DEMO: expected true or false/],
    ['VIGIL_FEEDS', 'binance', /VIGIL_FEEDS: expected venue:sym1,sym2/],
    ['CLICKHOUSE_DATABASE', 'x;DROP', /CLICKHOUSE_DATABASE/],
    ['VIGIL_LOG_LEVEL', 'loud', /VIGIL_LOG_LEVEL: expected one of/],
  ])('a bad %s=%s fails naming the key', (key, value, message) => {
    expect(() => loadConfig({ [key]: value })).toThrow(message);
    try {
      loadConfig({ [key]: value });
    } catch (e) {
      expect((e as { code: string }).code).toBe('VIGIL_ERR_CONFIG');
    }
  });

  it('reads per-venue endpoints', () => {
    const c = loadConfig({ VIGIL_FEED_URLS: 'orderflow=ws://127.0.0.1:9000/orders; kraken=wss://k.example/v2|https://k.example', VIGIL_BINANCE_WS_URL: 'ws://127.0.0.1:1' });
    expect(c.endpoints).toEqual({
      binance: { wsUrl: 'ws://127.0.0.1:1', restUrl: undefined },
      orderflow: { wsUrl: 'ws://127.0.0.1:9000/orders', restUrl: undefined },
      kraken: { wsUrl: 'wss://k.example/v2', restUrl: 'https://k.example' },
    });
    expect(() => loadConfig({ VIGIL_FEED_URLS: 'orderflow=ftp://x' })).toThrow(/VIGIL_FEED_URLS: expected venue=wsUrl/);
  });

  it('reads a JSON file with the same keys; the environment wins', () => {
    const p = file('ok.json', JSON.stringify({ PORT: 7000, VIGIL_DATA_DIR: '/var/vigil', detectors: { price_jump: { zThreshold: 9 } } }));
    const c = loadConfig({ VIGIL_CONFIG: p, PORT: '7001' });
    expect(c.PORT).toBe(7001);
    expect(c.VIGIL_DATA_DIR).toBe('/var/vigil');
    expect(c.detectors).toEqual({ price_jump: { zThreshold: 9 } });
    expect(c.configFile).toBe(p);
  });

  it('rejects unknown keys, bad values and broken JSON in the file', () => {
    expect(() => loadConfig({ VIGIL_CONFIG: file('unknown.json', '{"PROT": 1}') })).toThrow(/PROT: expected a known key/);
    expect(() => loadConfig({ VIGIL_CONFIG: file('bad.json', '{"PORT": "x"}') })).toThrow(/PORT: expected a TCP port/);
    expect(() => loadConfig({ VIGIL_CONFIG: file('broken.json', '{"PORT": ') })).toThrow(/VIGIL_CONFIG: expected a JSON object/);
    expect(() => loadConfig({ VIGIL_CONFIG: join(tmp, 'missing.json') })).toThrow(/VIGIL_CONFIG: expected a readable JSON file/);
    expect(() => loadConfig({ VIGIL_CONFIG: file('det.json', '{"detectors": []}') })).toThrow(/detectors: expected an object/);
  });

  it('documents every key', () => {
    for (const [k, v] of Object.entries(CONFIG_KEYS)) {
      expect(v.doc.length, k).toBeGreaterThan(5);
      expect(v.expected.length, k).toBeGreaterThan(3);
    }
  });
});
