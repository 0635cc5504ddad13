/**
 * Runs the configured detectors over the event topics. State is one object per (detector, key), kept
 * by the runner so it can be checkpointed and moved; detectors only see (state, event).
 */
import type { CanonicalEvent, EventKind, Finding } from '../core/events.ts';
import { findingId } from '../core/ids.ts';
import type { DetectorInstance, FindingDraft } from '../detectors/types.ts';
import { EVENT_TOPICS, TOPICS, type Batch, type OutgoingMessage, type Subscription, type Transport } from '../transport/types.ts';

interface Slot {
  detector: DetectorInstance;
  states: Map<string, unknown>;
}

export interface DetectorCounters {
  events: number;
  findings: Record<string, number>;
}

export class DetectorRunner {
  readonly counters: DetectorCounters = { events: 0, findings: {} };
  private readonly byKind = new Map<EventKind, Slot[]>();
  private subscription?: Subscription;

  constructor(
    private readonly transport: Transport,
    detectors: readonly DetectorInstance[],
    private readonly runId: string,
    private readonly group = 'vigil-detect',
  ) {
    for (const detector of detectors) {
      const slot: Slot = { detector, states: new Map() };
      for (const kind of detector.kinds) {
        let list = this.byKind.get(kind);
        if (!list) this.byKind.set(kind, (list = []));
        list.push(slot);
      }
      this.counters.findings[detector.name] ??= 0;
    }
  }

  async start(): Promise<void> {
    const kinds = new Set(this.byKind.keys());
    const topics = EVENT_TOPICS.filter((t) => [...kinds].some((k) => TOPICS[k] === t));
    this.subscription = await this.transport.subscribe<CanonicalEvent>({
      group: this.group,
      topics,
      eachBatch: (batch) => this.handle(batch),
    });
  }

  private async handle(batch: Batch<CanonicalEvent>): Promise<void> {
    const drafts: FindingDraft[] = [];
    const out: OutgoingMessage<Finding>[] = [];
    for (const m of batch.messages) {
      const ev = m.value;
      const slots = this.byKind.get(ev.kind);
      if (!slots) continue;
      this.counters.events++;
      for (const slot of slots) {
        const key = m.key;
        let state = slot.states.get(key);
        if (state === undefined) {
          state = slot.detector.newState(key);
          slot.states.set(key, state);
        }
        slot.detector.onEvent(state, ev, drafts);
        if (drafts.length > 0) {
          for (const d of drafts) {
            const f = this.toFinding(slot.detector, d);
            out.push({ key: f.key, value: f });
          }
          this.counters.findings[slot.detector.name] = (this.counters.findings[slot.detector.name] ?? 0) + drafts.length;
          drafts.length = 0;
        }
      }
    }
    if (out.length > 0) await this.transport.send(TOPICS.findings, out);
  }

  private toFinding(detector: DetectorInstance, draft: FindingDraft): Finding {
    const { trigger, ...rest } = draft;
    return {
      // The trigger's event time is part of the identity, so the same trade id at another time is another finding.
      id: findingId(detector.name, detector.ruleId, draft.key, `${trigger}@${draft.ts}`),
      runId: this.runId,
      detector: detector.name,
      ruleId: detector.ruleId,
      ...rest,
    };
  }

  /** Keys with state, per detector (for metrics and tests). */
  keyCount(): number {
    const slots = new Set([...this.byKind.values()].flat());
    let n = 0;
    for (const s of slots) n += s.states.size;
    return n;
  }

  async stop(): Promise<void> {
    await this.subscription?.stop();
  }
}
