/**
 * Runs a detector over events the way the runner does — one state per key (the message key, the view's
 * key or the detector's keyOf), status markers included — and checks that its state survives
 * checkpointing: the same events with every state serialized to JSON and restored at cut points give
 * exactly the same findings and signals.
 */
import { expect } from 'vitest';
import { eventKey, eventViews, type CanonicalEvent } from '../../src/core/events.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft, RiskSignal } from '../../src/detectors/types.ts';

export interface DetectorRun {
  findings: FindingDraft[];
  signals: RiskSignal[];
  /** Per event (index), the signals it produced. */
  signalsByEvent: RiskSignal[][];
  states: Map<string, unknown>;
}

/** The key the runner would keep this event's state under for `det`; undefined when det never sees it. */
export function stateKeyOf(det: Pick<DetectorInstance, 'view' | 'keyOf' | 'kinds'>, ev: CanonicalEvent): string | undefined {
  if (!det.kinds.includes(ev.kind)) return undefined;
  if (det.view !== undefined) {
    const v = eventViews(ev)?.find((x) => x.view === det.view);
    return v?.key;
  }
  return det.keyOf ? det.keyOf(ev) : eventKey(ev);
}

/** Runs events through the detector; with `restoreEvery`, every state goes through JSON at every n-th event. */
export function runDetector(det: DetectorInstance, events: readonly CanonicalEvent[], options: { restoreEvery?: number } = {}): DetectorRun {
  const states = new Map<string, unknown>();
  const findings: FindingDraft[] = [];
  const signals: RiskSignal[] = [];
  const signalsByEvent: RiskSignal[][] = [];
  events.forEach((ev, i) => {
    if (options.restoreEvery && i > 0 && i % options.restoreEvery === 0) {
      for (const [k, s] of states) states.set(k, det.fromJSON(JSON.parse(JSON.stringify(det.toJSON(s)))));
    }
    const key = stateKeyOf(det, ev);
    const sig: RiskSignal[] = [];
    if (key !== undefined) {
      let s = states.get(key);
      if (s === undefined) states.set(key, (s = det.newState(key)));
      det.onEvent(s, ev, findings, sig);
    }
    signals.push(...sig);
    signalsByEvent.push(sig);
  });
  return { findings, signals, signalsByEvent, states };
}

/** Builds the detector from its spec with params (defaults applied). */
export function detector(spec: DetectorSpec<any, any>, params: Record<string, unknown> = {}, ruleId = `${spec.name}.test`): DetectorInstance {
  return spec.create(spec.params.parse(params), ruleId);
}

/**
 * Asserts the detector gives the same findings and signals when its states are checkpointed and restored
 * at several cut points (takeover by another worker), and that every finding is well formed.
 */
export function expectRestorable(det: DetectorInstance, events: readonly CanonicalEvent[]): DetectorRun {
  const straight = runDetector(det, events);
  for (const every of [1, 7, Math.max(2, Math.floor(events.length / 3))]) {
    const cut = runDetector(det, events, { restoreEvery: every });
    expect(cut.findings).toEqual(straight.findings);
    expect(cut.signals).toEqual(straight.signals);
  }
  for (const f of straight.findings) expectWellFormed(f);
  return straight;
}

/** What every finding must carry to explain itself. */
export function expectWellFormed(f: FindingDraft): void {
  expect(f.summary.length).toBeGreaterThan(10);
  expect(Number.isFinite(f.score)).toBe(true);
  expect(f.windowStart).toBeLessThanOrEqual(f.windowEnd);
  expect(f.ts).toBeGreaterThanOrEqual(f.windowStart);
  expect(f.trigger.length).toBeGreaterThan(0);
  expect(f.evidence.triggers.length).toBeGreaterThan(0);
  expect(f.evidence.triggers.length).toBeLessThanOrEqual(50);
  expect(Object.keys(f.evidence.observed).length).toBeGreaterThan(0);
  expect(Object.keys(f.evidence.baseline).length).toBeGreaterThan(0);
  expect(Object.keys(f.evidence.threshold).length).toBeGreaterThan(0);
}
