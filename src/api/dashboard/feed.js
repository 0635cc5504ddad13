// The live alert feed: filled from GET /api/findings, then kept live by the WebSocket /api/alerts,
// which resumes with `since=<last id seen>` after a reconnect. Newest on top; at most MAX_ITEMS kept.
import { ApiError, alertsUrl, api } from './api.js';
import { STATUS_LABELS, h, severityRank, statusOf, subjectOf, timeOfDay } from './ui.js';

const MAX_ITEMS = 500;
const INITIAL_FILL = 100;
/** The server sends a heartbeat every 15 s: with nothing for this long, the connection is dead. */
const SILENCE_MS = 40_000;

/**
 * @param {{ list: HTMLElement, empty: HTMLElement, count: HTMLElement,
 *   onSelect: (f) => void, onState: (state: string, detail?: string) => void, onLive: (f) => void }} opts
 */
export function createFeed({ list, empty, count, onSelect, onState, onLive }) {
  /** id → { finding, el } */
  const items = new Map();
  let filter = { run: 'live', minSeverity: '', detector: '' };
  let socket;
  let lastLiveId; // the last finding id this page received over the socket: the resume point
  let generation = 0; // bumps on every (re)configure, so stale sockets and fills are ignored
  let retryMs = 1000;
  let retryTimer;
  let silenceTimer;
  let selectedId;
  let unseen = 0;

  function matches(f) {
    if (filter.run && f.runId !== filter.run) return false;
    if (filter.minSeverity && severityRank(f.severity) < severityRank(filter.minSeverity)) return false;
    if (filter.detector && f.detector !== filter.detector) return false;
    return true;
  }

  function render(f, source) {
    const status = statusOf(f);
    return h(
      'li',
      {
        class: `alert sev-${f.severity}${source === 'live' ? ' fresh' : ''}${f.id === selectedId ? ' selected' : ''}`,
        tabindex: '0',
        role: 'button',
        'aria-label': `${f.severity} ${f.detector} ${subjectOf(f)}: ${f.summary}`,
        dataset: { testid: 'alert-item', findingId: f.id, source, status, severity: f.severity },
        onclick: () => onSelect(f),
        onkeydown: (e) => {
          if (e.key === 'Enter' || e.key === ' ') {
            e.preventDefault();
            onSelect(f);
          }
        },
      },
      h(
        'div',
        { class: 'alert-top' },
        h('span', { class: 'sev-badge' }, f.severity),
        h('span', { class: 'alert-detector' }, f.detector),
        h('span', { class: 'alert-subject' }, subjectOf(f)),
        h('span', { class: `status-badge status-${status}`, dataset: { testid: 'alert-status' } }, STATUS_LABELS[status] ?? status),
        h('time', { class: 'alert-time', datetime: new Date(f.ts).toISOString(), title: new Date(f.ts).toISOString() }, timeOfDay(f.ts)),
      ),
      h('div', { class: 'alert-summary' }, f.summary),
    );
  }

  function updateCounts() {
    empty.hidden = items.size > 0;
    count.textContent = items.size === 0 ? '' : `${items.size}${items.size >= MAX_ITEMS ? '+' : ''}`;
    document.title = unseen > 0 ? `(${unseen}) Vigil` : 'Vigil';
  }

  function trim() {
    while (items.size > MAX_ITEMS) {
      const last = list.lastElementChild;
      if (!last) break;
      items.delete(last.dataset.findingId);
      last.remove();
    }
  }

  /** Adds a finding unless already shown; live ones go on top, a store page is appended in its order. */
  function add(f, source) {
    if (!matches(f) || items.has(f.id)) return false;
    const el = render(f, source);
    items.set(f.id, { finding: f, el });
    if (source === 'live') list.prepend(el);
    else list.append(el);
    return true;
  }

  async function fill(gen) {
    const params = { run: filter.run, minSeverity: filter.minSeverity, detector: filter.detector, limit: INITIAL_FILL, order: 'desc' };
    const page = await api('/api/findings', { params });
    if (gen !== generation) return;
    for (const f of page.items) add(f, 'store');
    trim();
    updateCounts();
  }

  function clearTimers() {
    clearTimeout(retryTimer);
    clearTimeout(silenceTimer);
  }

  function closeSocket() {
    clearTimers();
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      socket.close();
      socket = undefined;
    }
  }

  function armSilence(ws) {
    clearTimeout(silenceTimer);
    silenceTimer = setTimeout(() => ws.close(), SILENCE_MS);
  }

  function connect(gen) {
    if (gen !== generation || filter.run !== 'live') return;
    onState('connecting');
    // Resume after the last finding this page saw live; on the first connection after the newest
    // stored one, so nothing published between the fill and the upgrade is lost.
    const since = lastLiveId ?? list.firstElementChild?.dataset.findingId;
    const ws = new WebSocket(alertsUrl({ run: filter.run, minSeverity: filter.minSeverity, detector: filter.detector, since }));
    socket = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      retryMs = 1000;
      onState('live');
      armSilence(ws);
    };
    ws.onmessage = (ev) => {
      armSilence(ws);
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (msg.type === 'finding' && msg.finding) {
        lastLiveId = msg.finding.id;
        if (add(msg.finding, 'live')) {
          if (msg.finding.id !== selectedId) unseen++;
          trim();
          updateCounts();
          onLive(msg.finding);
        }
      } else if (msg.type === 'gap') {
        // The resume point left the server's buffer: fetch what the store has (duplicates are skipped).
        fill(gen).catch(() => {});
      }
    };
    ws.onclose = () => {
      if (socket !== ws) return;
      socket = undefined;
      clearTimeout(silenceTimer);
      if (gen !== generation) return;
      const wait = retryMs;
      retryMs = Math.min(retryMs * 2, 30_000);
      onState('offline', `reconnecting in ${Math.round(wait / 1000)} s`);
      retryTimer = setTimeout(async () => {
        if (!opened) {
          // An upgrade refused before it opened says nothing about why: ask the API (a 401 prompts for a key).
          try {
            await api('/api/findings', { params: { limit: 1, run: filter.run } });
          } catch (err) {
            if (err instanceof ApiError && err.status === 401) {
              onState('unauthorized');
              return;
            }
          }
        }
        connect(gen);
      }, wait);
    };
  }

  return {
    /** (Re)loads the feed for a run and filters, and (re)connects the live socket for the live run. */
    async configure(next) {
      filter = { ...filter, ...next };
      const gen = ++generation;
      closeSocket();
      lastLiveId = undefined;
      items.clear();
      list.replaceChildren();
      unseen = 0;
      updateCounts();
      if (filter.run !== 'live') onState('replay', filter.run);
      try {
        await fill(gen);
      } catch (err) {
        if (gen !== generation) return;
        if (err instanceof ApiError && err.status === 401) {
          onState('unauthorized');
          return;
        }
        onState('offline', err.message);
      }
      connect(gen);
    },

    /** Stops the socket (e.g. while waiting for a key). */
    stop() {
      generation++;
      closeSocket();
    },

    select(id) {
      selectedId = id;
      for (const { el } of items.values()) el.classList.toggle('selected', el.dataset.findingId === id);
      const it = items.get(id);
      if (it) it.el.classList.remove('fresh');
      unseen = [...items.values()].filter(({ el }) => el.classList.contains('fresh')).length;
      updateCounts();
    },

    /** Replaces a shown finding's workflow (after a status change). */
    setWorkflow(id, workflow) {
      const it = items.get(id);
      if (!it) return;
      it.finding = { ...it.finding, workflow };
      const el = render(it.finding, it.el.dataset.source);
      el.classList.remove('fresh');
      it.el.replaceWith(el);
      it.el = el;
    },

    findings() {
      return [...items.values()].map((it) => it.finding);
    },
  };
}
