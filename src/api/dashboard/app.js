// The dashboard's entry point: wires the header (connection state, run, API key), the alert feed,
// the price chart and the finding detail together.
import { api, getKey, isMissing, onUnauthorized, setKey } from './api.js';
import { RANGES, createPriceChart } from './charts.js';
import { createDetail } from './detail.js';
import { createFeed } from './feed.js';
import { $, SEVERITIES, h, replace } from './ui.js';

const STATE_TEXT = {
  connecting: 'Connecting…',
  live: 'Live',
  offline: 'Offline',
  unauthorized: 'API key needed',
  replay: 'Stored run',
};

function showConnection(state, detail) {
  const el = $('conn-state');
  el.dataset.state = state;
  el.textContent = detail ? `${STATE_TEXT[state]} · ${detail}` : STATE_TEXT[state];
}

function setConnection(state, detail) {
  if (state === 'unauthorized') needKey();
  else showConnection(state, detail);
}

let toastTimer;
function toast(message, kind = 'info') {
  const el = $('toast');
  el.textContent = message;
  el.dataset.kind = kind;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), kind === 'error' ? 8000 : 3500);
}

// ---------------------------------------------------------------- API key

let keyPromptOpen = false;

/** The API refused the request for want of a (valid) key: stop the live feed and ask for one. */
function needKey(message) {
  feed.stop();
  chart.clear('Waiting for an API key.');
  showConnection('unauthorized');
  openKeyDialog(getKey() ? `The stored API key was refused${message ? ` (${message})` : ''}. Enter another one.` : 'This service needs an API key: a viewer key to watch, an analyst key to act on findings (create one with “vigil keys create --role analyst”).');
}

function openKeyDialog(message) {
  const dialog = $('key-dialog');
  $('key-message').textContent = message;
  if (keyPromptOpen) return;
  keyPromptOpen = true;
  $('key-input').value = '';
  dialog.showModal();
  $('key-input').focus();
}

function closeKeyDialog() {
  keyPromptOpen = false;
  $('key-dialog').close();
}

function wireKeyDialog() {
  // The form never submits (the CSP allows no form action): Enter or "Use key" land here.
  $('key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const key = $('key-input').value.trim();
    if (!key) return;
    setKey(key);
    closeKeyDialog();
    start();
  });
  $('key-forget').addEventListener('click', () => {
    setKey('');
    closeKeyDialog();
    start();
  });
  $('key-cancel').addEventListener('click', closeKeyDialog);
  $('key-dialog').addEventListener('cancel', () => (keyPromptOpen = false));
  $('key-button').addEventListener('click', () => openKeyDialog(getKey() ? 'A key is stored in this browser. Enter a new one, or forget it.' : 'Enter an API key; it is kept in this browser (localStorage).'));
  onUnauthorized((message) => needKey(message));
}

// ---------------------------------------------------------------- filters, runs, instruments

const view = { run: 'live', minSeverity: '', detector: '', range: RANGES[0], instrument: undefined };
let instruments = [];

function fillSelect(select, options, selected) {
  replace(select, options.map(([v, label]) => h('option', { value: v, selected: v === selected }, label)));
}

async function loadRuns() {
  const select = $('run-select');
  let runs = [];
  try {
    runs = (await api('/api/runs', { params: { limit: 50 } })).items ?? [];
  } catch (err) {
    if (!isMissing(err)) throw err;
  }
  const ids = ['live', ...runs.map((r) => r.id ?? r.runId).filter((id) => id && id !== 'live')];
  fillSelect(select, ids.map((id) => [id, id === 'live' ? 'live' : `run ${id}`]), view.run);
}

async function loadDetectors() {
  let detectors = [];
  try {
    const res = await api('/api/rules');
    detectors = [...new Set((res.active ?? []).map((r) => r.detector))].sort();
  } catch (err) {
    if (!isMissing(err)) throw err;
  }
  fillSelect($('filter-detector'), [['', 'all detectors'], ...detectors.map((d) => [d, d])], view.detector);
}

const instrumentId = (i) => `${i.venue}:${i.symbol}`;

async function loadInstruments() {
  try {
    instruments = (await api('/api/instruments', { params: { run: view.run } })).items ?? [];
  } catch (err) {
    if (!isMissing(err)) throw err;
    instruments = [];
  }
  const select = $('instrument-select');
  if (instruments.length === 0) {
    fillSelect(select, [['', 'no instruments']], '');
    select.disabled = true;
    if (!view.instrument) chart.clear(view.run === 'live' ? 'No market data stored yet: the chart appears when trades arrive.' : `No market data in run ${view.run}.`);
    return;
  }
  select.disabled = false;
  if (!view.instrument || !instruments.some((i) => instrumentId(i) === view.instrument)) view.instrument = instrumentId(instruments[0]);
  fillSelect(select, instruments.map((i) => [instrumentId(i), `${i.venue} · ${i.symbol}`]), view.instrument);
}

function showChart() {
  const inst = instruments.find((i) => instrumentId(i) === view.instrument);
  if (!inst) return;
  chart.show({ venue: inst.venue, symbol: inst.symbol, run: view.run, range: view.range, lastTs: inst.lastTs });
}

let instrumentsRefresh;
/** A live finding on an instrument the picker lacks: refresh the list (at most every 5 s). */
function refreshInstrumentsSoon() {
  if (instrumentsRefresh) return;
  instrumentsRefresh = setTimeout(async () => {
    instrumentsRefresh = undefined;
    const had = view.instrument;
    await loadInstruments().catch(() => {});
    if (view.instrument && view.instrument !== had) showChart();
  }, 1500);
}

function wireControls() {
  fillSelect($('filter-severity'), [['', 'any severity'], ...SEVERITIES.map((s) => [s, `${s} and above`])], '');
  fillSelect($('range-select'), RANGES.map((r) => [r.id, r.label]), view.range.id);
  $('filter-severity').addEventListener('change', (e) => {
    view.minSeverity = e.target.value;
    feed.configure({ minSeverity: view.minSeverity });
  });
  $('filter-detector').addEventListener('change', (e) => {
    view.detector = e.target.value;
    feed.configure({ detector: view.detector });
  });
  $('run-select').addEventListener('change', async (e) => {
    view.run = e.target.value;
    view.instrument = undefined;
    detail.close();
    feed.configure({ run: view.run });
    await loadInstruments().catch((err) => toast(err.message, 'error'));
    showChart();
  });
  $('instrument-select').addEventListener('change', (e) => {
    view.instrument = e.target.value;
    showChart();
  });
  $('range-select').addEventListener('change', (e) => {
    view.range = RANGES.find((r) => r.id === e.target.value) ?? RANGES[0];
    showChart();
  });
  for (const style of ['candles', 'line']) {
    $(`style-${style}`).addEventListener('click', () => {
      for (const s of ['candles', 'line']) $(`style-${s}`).setAttribute('aria-pressed', String(s === style));
      chart.setStyle(style);
    });
  }
}

// ---------------------------------------------------------------- wiring

function select(f) {
  feed.select(f.id);
  detail.open(f);
  chart.highlight(f.id);
  // Follow the finding's instrument on the price chart.
  if (f.venue && f.symbol) {
    const id = `${f.venue}:${f.symbol}`;
    if (id !== view.instrument && instruments.some((i) => instrumentId(i) === id)) {
      view.instrument = id;
      $('instrument-select').value = id;
      showChart();
    }
  }
}

const chart = createPriceChart($('price-chart'), {
  onEmpty: (message) => {
    const el = $('price-empty');
    el.hidden = !message;
    el.parentElement.classList.toggle('is-empty', Boolean(message));
    if (message) el.textContent = message;
  },
  onSelect: select,
});

const feed = createFeed({
  list: $('alert-feed'),
  empty: $('feed-empty'),
  count: $('feed-count'),
  onSelect: select,
  onState: setConnection,
  onLive: (f) => {
    chart.addFinding(f);
    if (f.venue && f.symbol && !instruments.some((i) => i.venue === f.venue && i.symbol === f.symbol)) refreshInstrumentsSoon();
  },
});

const detail = createDetail({
  panel: $('detail'),
  placeholder: $('detail-placeholder'),
  onWorkflow: (id, workflow) => feed.setWorkflow(id, workflow),
  toast,
});

async function start() {
  setConnection('connecting');
  await feed.configure({ run: view.run, minSeverity: view.minSeverity, detector: view.detector });
  if (keyPromptOpen) return; // the rest would only be refused too: start again once a key is given
  const results = await Promise.allSettled([loadRuns(), loadDetectors(), loadInstruments()]);
  for (const r of results) if (r.status === 'rejected' && r.reason?.status !== 401) toast(r.reason?.message ?? String(r.reason), 'error');
  showChart();
}

// Until the store has market data, look for instruments now and then (a live finding also triggers it).
setInterval(() => {
  if (instruments.length === 0 && !keyPromptOpen) refreshInstrumentsSoon();
}, 10_000);

document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && !keyPromptOpen) detail.close();
});
wireKeyDialog();
wireControls();
start();
