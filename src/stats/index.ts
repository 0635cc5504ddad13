export { RollingMoments, type RollingMomentsJSON } from './welford.ts';
export { SortedWindow, type SortedWindowJSON } from './sorted-window.ts';
export { TimeWindow, type TimeWindowJSON, type EvictFn } from './event-window.ts';
export { Ewma, type EwmaOptions, type EwmaJSON } from './ewma.ts';
export {
  SlidingExtremum,
  SlidingMinMax,
  type ExtremumMode,
  type SlidingExtremumJSON,
  type SlidingMinMaxJSON,
} from './monotonic-deque.ts';
export { DDSketch } from './ddsketch.ts';
export { Cusum, PageHinkley } from './change.ts';
export { RateCounter } from './rate.ts';
export { DistinctCountWindow } from './distinct-count-window.ts';
