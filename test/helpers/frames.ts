/** Hand-made frames for the normalizer tests, and what a normalizer makes of one. */
import { expect } from 'vitest';
import type { CanonicalEvent } from '../../src/core/events.ts';
import { MalformedFrameError, type Normalizer, type RawFrame } from '../../src/feeds/types.ts';

/** A frame of `source` received at `recvTs`: `data` as is when it is text, else its JSON. */
export function rawFrame(source: string, recvTs: number, data: unknown, extra: Partial<RawFrame> = {}): RawFrame {
  return { recvTs, source, data: typeof data === 'string' ? data : JSON.stringify(data), ...extra };
}

/** The events and the ignore label the normalizer gives one frame. */
export function normalizeFrame(n: Normalizer, frame: RawFrame): { events: CanonicalEvent[]; label: string | undefined } {
  const events: CanonicalEvent[] = [];
  const label = n.normalize(frame, events);
  return { events, label };
}

/**
 * The reason of the MalformedFrameError the normalizer rejects the frame with; the test fails when it
 * throws anything else or accepts the frame, and with `noEvents` also when it emitted an event first.
 */
export function rejectionReason(n: Normalizer, frame: RawFrame, noEvents = false): string {
  const events: CanonicalEvent[] = [];
  try {
    n.normalize(frame, events);
  } catch (err) {
    expect(err).toBeInstanceOf(MalformedFrameError);
    if (noEvents) expect(events).toHaveLength(0);
    return (err as Error).message;
  }
  throw new Error(`expected a MalformedFrameError for ${frame.data.slice(0, 200)}`);
}
