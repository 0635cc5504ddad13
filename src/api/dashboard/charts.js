// Charts with TradingView's lightweight-charts (served from node_modules at a fixed path): the
// per-instrument price chart with finding markers, and the context chart of one finding.
import {
  AreaSeries,
  CandlestickSeries,
  ColorType,
  CrosshairMode,
  LineSeries,
  LineStyle,
  createChart,
  createSeriesMarkers,
} from '/dashboard/vendor/lightweight-charts.mjs';
import { api, isMissing } from './api.js';
import { h, replace, severityRank, dateTime, value } from './ui.js';

export const SEVERITY_COLORS = {
  info: '#7d8fa3',
  low: '#4fa3e0',
  medium: '#e5b93c',
  high: '#f08a3c',
  critical: '#ef4d5a',
};

/** Ranges the price chart offers, each with the candle interval that gives it a few hundred bars. */
export const RANGES = [
  { id: '5m', label: '5 min', ms: 5 * 60_000, interval: '1s', intervalMs: 1000 },
  { id: '30m', label: '30 min', ms: 30 * 60_000, interval: '5s', intervalMs: 5000 },
  { id: '6h', label: '6 h', ms: 6 * 3_600_000, interval: '1m', intervalMs: 60_000 },
  { id: '1d', label: '1 day', ms: 86_400_000, interval: '5m', intervalMs: 300_000 },
  { id: '1w', label: '1 week', ms: 7 * 86_400_000, interval: '1h', intervalMs: 3_600_000 },
];

const POLL_MS = 3000;
const sec = (ms) => ms / 1000;

function baseOptions() {
  return {
    autoSize: true,
    layout: {
      background: { type: ColorType.Solid, color: 'transparent' },
      textColor: '#9aa8b8',
      fontSize: 11,
      // The attribution logo injects an inline <style>, which the page's CSP refuses; the page
      // footer credits TradingView instead.
      attributionLogo: false,
    },
    grid: { vertLines: { color: 'rgba(148,163,184,0.07)' }, horzLines: { color: 'rgba(148,163,184,0.07)' } },
    rightPriceScale: { borderColor: 'rgba(148,163,184,0.2)' },
    timeScale: { borderColor: 'rgba(148,163,184,0.2)', timeVisible: true, secondsVisible: true },
    crosshair: { mode: CrosshairMode.Normal },
  };
}

/**
 * The price chart of one instrument: candles (or a close line) from GET /api/prices, polled while the
 * run is live, and a marker at each finding's time (click one to open it).
 */
export function createPriceChart(container, { onEmpty, onSelect }) {
  const chart = createChart(container, baseOptions());
  let style = 'candles';
  let series;
  let markers;
  let current; // { venue, symbol, run, range, anchor }
  let lastBar; // time (s) of the newest bar shown
  let findings = new Map();
  let pollTimer;
  let generation = 0;
  let highlighted; // the id of the finding open in the detail panel: its marker is drawn larger

  function makeSeries() {
    if (series) chart.removeSeries(series);
    series =
      style === 'candles'
        ? chart.addSeries(CandlestickSeries, {
            upColor: '#26a69a',
            downColor: '#ef5350',
            borderVisible: false,
            wickUpColor: '#26a69a',
            wickDownColor: '#ef5350',
          })
        : chart.addSeries(LineSeries, { color: '#5aa9ff', lineWidth: 2 });
    markers = createSeriesMarkers(series, []);
  }
  makeSeries();

  chart.subscribeClick((param) => {
    const id = param.hoveredObjectId;
    if (typeof id === 'string' && findings.has(id)) onSelect(findings.get(id));
  });

  const toPoint = (b) => (style === 'candles' ? { time: sec(b.t), open: b.open, high: b.high, low: b.low, close: b.close } : { time: sec(b.t), value: b.close });

  function drawMarkers() {
    if (!current) return;
    const iv = current.range.intervalMs;
    const list = [...findings.values()]
      .map((f) => ({
        id: f.id,
        // Snap to the bar that holds the finding's time.
        time: sec(Math.floor(f.ts / iv) * iv),
        position: 'aboveBar',
        shape: 'arrowDown',
        color: SEVERITY_COLORS[f.severity] ?? SEVERITY_COLORS.info,
        text: f.id === highlighted ? f.detector : severityRank(f.severity) >= severityRank('high') ? f.detector : '',
        size: f.id === highlighted ? 1.6 : 1,
      }))
      .sort((a, b) => a.time - b.time);
    markers.setMarkers(list);
  }

  async function loadFindings(gen) {
    const { venue, symbol, run } = current;
    const from = current.anchor - current.range.ms;
    const page = await api('/api/findings', { params: { venue, symbol, run, from, limit: 500, order: 'desc' } });
    if (gen !== generation) return;
    for (const f of page.items) findings.set(f.id, f);
  }

  async function poll(gen) {
    if (gen !== generation || !current || current.run !== 'live') return;
    try {
      const res = await api('/api/prices', {
        params: { venue: current.venue, symbol: current.symbol, run: current.run, interval: current.range.interval, from: lastBar === undefined ? current.anchor - current.range.ms : lastBar * 1000 },
      });
      if (gen !== generation) return;
      const bars = res.items ?? [];
      for (const b of bars) {
        if (lastBar !== undefined && sec(b.t) < lastBar) continue;
        if (lastBar === undefined || sec(b.t) > lastBar) container.dataset.bars = String(Number(container.dataset.bars ?? 0) + 1);
        series.update(toPoint(b));
        lastBar = sec(b.t);
      }
      if (bars.length > 0) onEmpty(false);
    } catch {
      /* transient: the next poll tries again */
    }
    pollTimer = setTimeout(() => poll(gen), POLL_MS);
  }

  return {
    /** Shows an instrument: { venue, symbol, run, range, lastTs }. */
    async show(next) {
      const gen = ++generation;
      clearTimeout(pollTimer);
      current = { ...next, anchor: next.lastTs ?? Date.now() };
      lastBar = undefined;
      findings = new Map();
      series.setData([]);
      container.dataset.bars = '0';
      markers.setMarkers([]);
      try {
        const res = await api('/api/prices', {
          params: { venue: current.venue, symbol: current.symbol, run: current.run, interval: current.range.interval, from: current.anchor - current.range.ms },
        });
        if (gen !== generation) return;
        const bars = res.items ?? [];
        series.setData(bars.map(toPoint));
        container.dataset.bars = String(bars.length); // how many bars are drawn (tests read it)
        lastBar = bars.length > 0 ? sec(bars[bars.length - 1].t) : undefined;
        onEmpty(bars.length === 0 ? 'No prices for this instrument in this range yet.' : false);
        chart.timeScale().fitContent();
      } catch (err) {
        if (gen !== generation) return;
        onEmpty(isMissing(err) ? 'This service has no price history for the instrument (yet).' : `Prices unavailable: ${err.message}`);
      }
      try {
        await loadFindings(gen);
        if (gen === generation) drawMarkers();
      } catch {
        /* markers are a bonus: the chart stands without them */
      }
      pollTimer = setTimeout(() => poll(gen), POLL_MS);
    },

    /** A live finding arrived: mark it when it belongs to the instrument shown. */
    addFinding(f) {
      if (!current || f.venue !== current.venue || f.symbol !== current.symbol) return;
      findings.set(f.id, f);
      drawMarkers();
    },

    /** Draws the marker of the finding open in the detail panel larger. */
    highlight(id) {
      highlighted = id;
      drawMarkers();
    },

    setStyle(next) {
      if (next === style) return;
      style = next;
      makeSeries();
      if (current) this.show(current);
    },

    clear(message) {
      generation++;
      clearTimeout(pollTimer);
      current = undefined;
      series.setData([]);
      container.dataset.bars = '0';
      markers.setMarkers([]);
      onEmpty(message);
    },

    get current() {
      return current;
    },
  };
}

/**
 * The context of one finding: trade prices (and the quotes' bid/ask) around it, the finding's window
 * shaded and its time marked; for an account, the transactions around it as a table.
 * Returns a dispose function.
 */
export function renderContext(container, context) {
  const f = context.finding;
  if (context.kind === 'account' || (context.transactions?.length ?? 0) > 0) return renderTransactions(container, context);
  const trades = context.trades ?? [];
  const quotes = context.quotes ?? [];
  if (trades.length === 0 && quotes.length === 0) {
    replace(container, h('p', { class: 'empty' }, 'No trades or quotes stored around this finding.'));
    return () => {};
  }
  const chartEl = h('div', { class: 'chart context-chart', dataset: { testid: 'context-chart' } });
  const legend = h(
    'div',
    { class: 'legend' },
    trades.length > 0 ? h('span', { class: 'key trade' }, `trades (${trades.length}${context.truncated?.trades ? ', those nearest the finding' : ''})`) : null,
    quotes.length > 0 ? h('span', { class: 'key quote' }, 'bid / ask') : null,
    h('span', { class: 'key window' }, `finding window ${dateTime(f.windowStart)} → ${dateTime(f.windowEnd).slice(11)}`),
  );
  replace(container, chartEl, legend);
  const chart = createChart(chartEl, baseOptions());

  // One point per millisecond (lightweight-charts needs strictly increasing times): the last price wins.
  const byMs = (rows, pick) => {
    const m = new Map();
    for (const r of rows) {
      const v = pick(r);
      if (typeof v === 'number' && Number.isFinite(v)) m.set(r.ts, v);
    }
    return [...m].sort((a, b) => a[0] - b[0]).map(([ts, v]) => ({ time: sec(ts), value: v }));
  };

  const times = new Set();
  // The finding's window as a full-height band: an area at 1 on its own hidden 0..1 scale.
  const band = 'rgba(229,185,60,0.14)';
  const window = chart.addSeries(AreaSeries, {
    priceScaleId: 'window',
    lineColor: 'rgba(0,0,0,0)',
    lineWidth: 1,
    topColor: band,
    bottomColor: band,
    priceLineVisible: false,
    lastValueVisible: false,
    crosshairMarkerVisible: false,
    autoscaleInfoProvider: () => ({ priceRange: { minValue: 0, maxValue: 1 } }),
  });
  chart.priceScale('window').applyOptions({ scaleMargins: { top: 0, bottom: 0 }, visible: false });
  let main;
  if (quotes.length > 0) {
    const bid = chart.addSeries(LineSeries, { color: 'rgba(38,166,154,0.8)', lineWidth: 1, lineStyle: LineStyle.Dotted, priceLineVisible: false, lastValueVisible: false });
    const ask = chart.addSeries(LineSeries, { color: 'rgba(239,83,80,0.8)', lineWidth: 1, lineStyle: LineStyle.Dotted, priceLineVisible: false, lastValueVisible: false });
    const b = byMs(quotes, (q) => q.bid);
    const a = byMs(quotes, (q) => q.ask);
    bid.setData(b);
    ask.setData(a);
    for (const p of [...b, ...a]) times.add(p.time);
    main = bid;
  }
  if (trades.length > 0) {
    const line = chart.addSeries(LineSeries, { color: '#5aa9ff', lineWidth: 2, pointMarkersVisible: trades.length < 200 });
    const points = byMs(trades, (t) => t.price);
    line.setData(points);
    for (const p of points) times.add(p.time);
    main = line;
  }
  const lo = sec(f.windowStart);
  const hi = sec(f.windowEnd);
  window.setData([...times].filter((t) => t >= lo && t <= hi).sort((a, b) => a - b).map((time) => ({ time, value: 1 })));
  // The marker goes on the nearest data time at or before the finding.
  const sorted = [...times].sort((a, b) => a - b);
  const at = sorted.filter((t) => t <= sec(f.ts)).pop() ?? sorted[0];
  if (main && at !== undefined) {
    createSeriesMarkers(main, [{ time: at, position: 'aboveBar', shape: 'arrowDown', color: SEVERITY_COLORS[f.severity] ?? '#fff', text: 'finding' }]);
  }
  chart.timeScale().fitContent();
  return () => chart.remove();
}

function renderTransactions(container, context) {
  const f = context.finding;
  const rows = context.transactions ?? [];
  if (rows.length === 0) {
    replace(container, h('p', { class: 'empty' }, 'No transactions stored around this finding.'));
    return () => {};
  }
  const inWindow = (t) => t.ts >= f.windowStart && t.ts <= f.windowEnd;
  const table = h(
    'table',
    { class: 'tx-table', dataset: { testid: 'context-transactions' } },
    h('thead', {}, h('tr', {}, ['time', 'id', 'account', 'counterparty', 'merchant', 'amount', 'channel', 'country'].map((c) => h('th', {}, c)))),
    h(
      'tbody',
      {},
      rows.map((t) =>
        h(
          'tr',
          { class: inWindow(t) ? 'in-window' : '' },
          h('td', {}, dateTime(t.ts).slice(11, 23)),
          h('td', { class: 'mono' }, t.id),
          h('td', {}, t.account ?? '—'),
          h('td', {}, t.counterparty ?? '—'),
          h('td', {}, t.merchant ?? '—'),
          h('td', { class: 'num' }, `${value(t.amount)} ${t.currency ?? ''}`),
          h('td', {}, t.channel ?? '—'),
          h('td', {}, t.country ?? '—'),
        ),
      ),
    ),
  );
  replace(container, h('div', { class: 'table-wrap' }, table), h('p', { class: 'hint' }, 'Highlighted: inside the finding’s window.'));
  return () => {};
}
