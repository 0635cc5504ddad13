/**
 * What the pipeline tells a metrics sink. Declared here, implemented by src/observability/metrics.ts
 * (prom-client), so the pipeline never imports a metrics library and detectors never see metrics at all.
 *
 * Two ways in:
 * - `attach(source)`: a component hands over the counters it keeps anyway (Ingestor.counters,
 *   DetectorRunner.counters, the writers' counters, Transport.stats()); the sink reads them when scraped,
 *   which costs nothing on the hot path. The returned function detaches the component at close: its
 *   counts stay in the totals (a demo loop's pipelines come and go; the exported counters never go down).
 * - the `observe*` calls, for what no counter holds (latencies, findings by severity). They are made per
 *   batch or per finding, or for a sampled event, never per event.
 */
import type { Ingestor } from './ingest.ts';
import type { DetectorRunner } from './detect.ts';
import type { StoreSide } from './store-side.ts';
import type { Transport } from '../transport/types.ts';

export type MetricsSource =
  | { kind: 'ingestor'; ingestor: Ingestor }
  | { kind: 'detectors'; runner: DetectorRunner }
  | { kind: 'store'; storeSide: StoreSide }
  | { kind: 'transport'; transport: Transport };

export interface PipelineMetrics {
  /** Registers a component whose counters are read at scrape time; returns its detach. */
  attach(source: MetricsSource): () => void;
  /** One batch's detect pass (every rule over its events): wall time and events handled. */
  observeDetectBatch(seconds: number, events: number): void;
  /** A sampled event's time in one detector (rule instance), in seconds. */
  observeDetectorEvent(detector: string, seconds: number): void;
  /** Wall clock when a finding went out minus its triggering event's receive time (live only), in seconds. */
  observeEventToFinding(detector: string, seconds: number): void;
  /** One finding emitted. */
  observeFinding(detector: string, severity: string): void;
}

/** One event in this many is timed per detector (the others run untimed). */
export const DETECTOR_SAMPLE_EVERY = 64;
