/**
 * A backtest worker thread (started by src/replay/backtest.ts): says when its modules are loaded, takes
 * the captured input once (deserialized from the shared bytes), then runs the settings it is handed, one
 * at a time, reporting each result.
 */
import { deserialize } from 'node:v8';
import { parentPort } from 'node:worker_threads';
import { runSetting, type CapturedBatch, type FromWorker, type SettingJob, type ToWorker } from './backtest-run.ts';

const port = parentPort;
if (!port) throw new Error('backtest-worker.ts runs as a worker thread');

let batches: CapturedBatch[] = [];
let job: SettingJob | undefined;
const post = (m: FromWorker) => port.postMessage(m);

port.on('message', (m: ToWorker) => {
  if (m.type === 'input') {
    batches = deserialize(Buffer.from(m.data)) as CapturedBatch[];
    job = m.job;
    post({ type: 'ready' });
  } else if (m.type === 'run') {
    runSetting(batches, job as SettingJob, m.setting).then(
      (result) => post({ type: 'result', result }),
      (e: unknown) => post({ type: 'error', index: m.setting.index, message: (e as Error)?.message ?? String(e) }),
    );
  } else port.close();
});
post({ type: 'loaded' });
