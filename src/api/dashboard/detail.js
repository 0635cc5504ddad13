// The finding detail panel: summary, evidence, workflow (status, assignee, history, actions) and
// the context chart. Each part loads on its own and degrades to a note when its endpoint is missing.
import { ApiError, api, isMissing } from './api.js';
import { renderContext } from './charts.js';
import { STATUS_LABELS, dateTime, duration, h, replace, statusOf, subjectOf, value } from './ui.js';

/** The workflow's legal transitions (POST /api/findings/:id/status answers 409 to any other). */
const NEXT = {
  open: ['acknowledged', 'resolved', 'false_positive'],
  acknowledged: ['resolved', 'false_positive', 'open'],
  resolved: ['open'],
  false_positive: ['open'],
};
const ACTIONS = [
  { status: 'acknowledged', label: 'Acknowledge', testid: 'action-acknowledge', cls: 'primary' },
  { status: 'resolved', label: 'Resolve', testid: 'action-resolve', cls: 'good' },
  { status: 'false_positive', label: 'False positive', testid: 'action-false-positive', cls: '' },
  { status: 'open', label: 'Reopen', testid: 'action-reopen', cls: '' },
];

/**
 * @param {{ panel: HTMLElement, placeholder: HTMLElement, onWorkflow: (id, workflow) => void, toast: (msg, kind?) => void }} opts
 */
export function createDetail({ panel, placeholder, onWorkflow, toast }) {
  let shown; // the finding on screen
  let disposeContext = () => {};
  let generation = 0; // bumps on every render: stale history loads are dropped
  let contextGeneration = 0; // bumps when another finding's context is wanted (re-renders keep the chart)
  const parts = {};

  function kvTable(title, obj, testid) {
    const entries = Object.entries(obj ?? {});
    return h(
      'div',
      { class: 'kv-block' },
      h('h4', {}, title),
      entries.length === 0
        ? h('p', { class: 'muted' }, 'none')
        : h('dl', { class: 'kv', dataset: testid ? { testid } : {} }, entries.map(([k, v]) => [h('dt', { title: k }, k), h('dd', { class: typeof v === 'number' ? 'num' : '', title: value(v) }, value(v))])),
    );
  }

  function renderEvidence(f) {
    const ev = f.evidence ?? {};
    const { observed, baseline, threshold, triggers, ...rest } = ev;
    return h(
      'section',
      { class: 'evidence', dataset: { testid: 'evidence' } },
      h('h3', {}, 'Evidence'),
      h('div', { class: 'kv-grid' }, kvTable('Observed', observed, 'evidence-observed'), kvTable('Baseline', baseline), kvTable('Threshold', threshold)),
      Object.keys(rest).length > 0 ? kvTable('More', rest) : null,
      Array.isArray(triggers) && triggers.length > 0
        ? h('div', { class: 'kv-block' }, h('h4', {}, `Triggers (${triggers.length})`), h('ul', { class: 'triggers mono' }, triggers.slice(0, 20).map((t) => h('li', {}, t))), triggers.length > 20 ? h('p', { class: 'muted' }, `… and ${triggers.length - 20} more`) : null)
        : null,
    );
  }

  function renderWorkflow(f) {
    const wf = f.workflow;
    const status = statusOf(f);
    const note = h('textarea', { id: 'action-note', rows: '2', maxlength: '2000', placeholder: 'Note (optional)', dataset: { testid: 'action-note' } });
    const buttons = ACTIONS.filter((a) => a.status !== status).map((a) =>
      h(
        'button',
        {
          type: 'button',
          class: `btn ${a.cls}`,
          disabled: !(NEXT[status] ?? []).includes(a.status),
          dataset: { testid: a.testid, status: a.status },
          onclick: (e) => changeStatus(f, a.status, note, e.currentTarget),
        },
        a.label,
      ),
    );
    const assignee = h('input', { type: 'text', maxlength: '200', placeholder: 'assignee', value: wf?.assignee ?? '', dataset: { testid: 'assignee-input' } });
    return h(
      'section',
      { class: 'workflow', dataset: { testid: 'workflow' } },
      h('h3', {}, 'Workflow'),
      h(
        'div',
        { class: 'wf-state' },
        h('span', { class: `status-badge big status-${status}`, id: 'workflow-status', dataset: { testid: 'workflow-status', status } }, STATUS_LABELS[status] ?? status),
        h('span', { class: 'muted' }, wf?.assignee ? `assigned to ${wf.assignee}` : 'unassigned'),
        wf?.updatedAt ? h('span', { class: 'muted' }, `· ${wf.updatedBy ?? 'someone'}, ${dateTime(wf.updatedAt)}`) : null,
      ),
      wf === undefined ? h('p', { class: 'muted' }, 'This service does not track workflow for findings.') : null,
      h('div', { class: 'wf-actions' }, note, h('div', { class: 'btn-row' }, buttons)),
      h(
        'div',
        { class: 'wf-assign' },
        assignee,
        h('button', { type: 'button', class: 'btn', dataset: { testid: 'action-assign' }, onclick: (e) => assign(f, assignee.value.trim() || null, note, e.currentTarget) }, 'Assign'),
      ),
      (parts.history = h('div', { class: 'history', dataset: { testid: 'history' } }, h('p', { class: 'muted' }, 'Loading history…'))),
    );
  }

  function renderHistory(items) {
    if (items.length === 0) return replace(parts.history, h('h4', {}, 'History'), h('p', { class: 'muted' }, 'Nothing done yet.'));
    const describe = (a) => {
      if (a.action === 'status') return `${STATUS_LABELS[a.fromStatus] ?? a.fromStatus ?? '?'} → ${STATUS_LABELS[a.toStatus] ?? a.toStatus}`;
      if (a.action === 'assign') return a.assignee ? `assigned to ${a.assignee}` : 'unassigned';
      return 'note';
    };
    replace(
      parts.history,
      h('h4', {}, 'History'),
      h(
        'ol',
        { class: 'history-list' },
        items.map((a) =>
          h(
            'li',
            { dataset: { testid: 'history-item', action: a.action, toStatus: a.toStatus ?? '' } },
            h('span', { class: 'h-time' }, dateTime(a.ts)),
            h('span', { class: 'h-actor' }, a.actor),
            h('span', { class: 'h-what' }, describe(a)),
            a.note ? h('div', { class: 'h-note' }, a.note) : null,
          ),
        ),
      ),
    );
  }

  async function loadHistory(f, gen) {
    try {
      const res = await api(`/api/findings/${encodeURIComponent(f.id)}/history`, { params: { run: f.runId } });
      if (gen === generation) renderHistory(res.items ?? []);
    } catch (err) {
      if (gen !== generation) return;
      replace(parts.history, h('h4', {}, 'History'), h('p', { class: 'muted' }, isMissing(err) ? 'No history on this service.' : `History unavailable: ${err.message}`));
    }
  }

  async function loadContext(f) {
    const gen = ++contextGeneration;
    disposeContext();
    disposeContext = () => {};
    replace(parts.context, h('p', { class: 'muted' }, 'Loading context…'));
    try {
      const ctx = await api(`/api/findings/${encodeURIComponent(f.id)}/context`, { params: { run: f.runId } });
      if (gen !== contextGeneration) return;
      disposeContext = renderContext(parts.context, { ...ctx, finding: ctx.finding ?? f });
    } catch (err) {
      if (gen !== contextGeneration) return;
      replace(parts.context, h('p', { class: 'muted' }, isMissing(err) ? 'No context data on this service for this finding.' : `Context unavailable: ${err.message}`));
    }
  }

  async function post(f, path, body, button) {
    const all = panel.querySelectorAll('.wf-actions button, .wf-assign button');
    for (const b of all) b.disabled = true;
    button.classList.add('busy');
    try {
      const res = await api(`/api/findings/${encodeURIComponent(f.id)}/${path}`, { method: 'POST', body: { ...body, run: f.runId } });
      const updated = { ...shown, workflow: res.workflow };
      onWorkflow(f.id, res.workflow);
      if (shown?.id === f.id) renderAll(updated, { keepContext: true });
      return true;
    } catch (err) {
      const msg =
        err instanceof ApiError && err.status === 409
          ? `Not allowed now: ${err.message}`
          : err instanceof ApiError && err.status === 403
            ? 'Your key may not change findings (needs the analyst role).'
            : isMissing(err) && err.code !== 'VIGIL_ERR_NOT_FOUND'
              ? 'This service has no workflow endpoints.'
              : err.message;
      toast(msg, 'error');
      if (shown?.id === f.id) renderAll(shown, { keepContext: true });
      return false;
    }
  }

  function changeStatus(f, status, note, button) {
    const text = note.value.trim();
    return post(f, 'status', text ? { status, note: text } : { status }, button).then((ok) => {
      if (ok) toast(`${STATUS_LABELS[status]}: ${f.summary}`, 'ok');
    });
  }

  function assign(f, assignee, note, button) {
    const text = note.value.trim();
    return post(f, 'assign', text ? { assignee, note: text } : { assignee }, button);
  }

  function renderAll(f, { keepContext = false } = {}) {
    const gen = ++generation;
    shown = f;
    const contextEl = keepContext && parts.context ? parts.context : h('div', { class: 'context', dataset: { testid: 'context' } });
    parts.context = contextEl;
    replace(
      panel,
      h(
        'div',
        { class: 'detail-head' },
        h('span', { class: `sev-badge sev-${f.severity}` }, f.severity),
        h('h2', { id: 'detail-title', dataset: { testid: 'detail-summary' } }, f.summary),
        h('button', { type: 'button', class: 'icon-btn', title: 'Close', 'aria-label': 'Close', dataset: { testid: 'detail-close' }, onclick: () => close() }, '×'),
      ),
      h(
        'dl',
        { class: 'facts' },
        [
          ['detector', `${f.detector} (rule ${f.ruleId})`],
          ['subject', subjectOf(f)],
          ['time', dateTime(f.ts)],
          ['window', `${dateTime(f.windowStart)} · ${duration(Math.max(0, f.windowEnd - f.windowStart))}`],
          ['score', value(f.score)],
          ['run', f.runId],
          ['id', f.id],
          f.rulesVersion ? ['rules', f.rulesVersion] : null,
        ]
          .filter(Boolean)
          .map(([k, v]) => [h('dt', {}, k), h('dd', { class: k === 'id' ? 'mono' : '' }, v)]),
      ),
      h('div', { class: 'detail-cols' }, h('div', {}, renderEvidence(f), h('section', { class: 'context-section' }, h('h3', {}, 'Context'), contextEl)), renderWorkflow(f)),
    );
    panel.dataset.findingId = f.id;
    panel.hidden = false;
    placeholder.hidden = true;
    loadHistory(f, gen);
    if (!keepContext) loadContext(f);
  }

  function close() {
    generation++;
    contextGeneration++;
    disposeContext();
    disposeContext = () => {};
    shown = undefined;
    panel.hidden = true;
    placeholder.hidden = false;
    delete panel.dataset.findingId;
  }

  return {
    /** Opens a finding: shown at once from what the feed has, then refreshed from the API. */
    async open(f) {
      renderAll(f);
      const gen = generation;
      try {
        const fresh = await api(`/api/findings/${encodeURIComponent(f.id)}`, { params: { run: f.runId } });
        if (gen === generation && shown?.id === f.id && JSON.stringify(fresh.workflow) !== JSON.stringify(f.workflow)) {
          onWorkflow(f.id, fresh.workflow);
          renderAll(fresh, { keepContext: true });
        }
      } catch {
        /* the feed's copy stays on screen */
      }
    },
    close,
    get shownId() {
      return shown?.id;
    },
  };
}
