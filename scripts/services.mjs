#!/usr/bin/env node
/**
 * Local services for development and tests, without Docker:
 *
 *   npm run services start [kafka|redis|all]   lay out and start what is missing, wait until it answers
 *   npm run services stop  [kafka|redis|all]   stop Kafka (default); Redis only if this script started it
 *   npm run services status                    what runs, where
 *
 * Kafka: a real Apache Kafka 4.x broker from Maven Central (scripts/kafka/pom.xml), jars copied to
 * .services/kafka/libs once per pom (a marker holds the pom's hash; ~/.m2 caches the downloads too),
 * KRaft storage formatted once, one combined broker+controller on 127.0.0.1:9092 (controller 9093),
 * data, logs and pid file under .services/kafka/. Readiness is asked of the broker (describeCluster),
 * never slept for. Redis: answers on 127.0.0.1:6379, or is started with the daemon command below.
 *
 * Plain Node on purpose (runs before anything is built). The functions are exported for tests, which
 * run extra broker instances on other ports (kafkaInstance({ name, port, controllerPort })).
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { connect } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const SERVICES_DIR = join(ROOT, '.services');
const POM = join(ROOT, 'scripts', 'kafka', 'pom.xml');
/** Shared by every broker instance. */
const LIBS_DIR = join(SERVICES_DIR, 'kafka', 'libs');
const LIBS_MARKER = join(LIBS_DIR, '.resolved');

export const REDIS = { host: '127.0.0.1', port: 6379, pidFile: join(SERVICES_DIR, 'redis.pid') };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const secs = (ms) => `${(ms / 1000).toFixed(1)}s`;
let quiet = false;
const say = (msg) => {
  if (!quiet) console.log(`services: ${msg}`);
};

/** The Kafka version the pom names. */
export function kafkaVersion() {
  const m = /<kafka\.version>([^<]+)<\/kafka\.version>/.exec(readFileSync(POM, 'utf8'));
  if (!m) throw new Error(`${POM}: no <kafka.version> property`);
  return m[1].trim();
}

/**
 * A broker instance: the default one is `kafka` on 9092/9093 in .services/kafka/. Others (tests that
 * stop and start a broker) get their own name, ports and directory, and share the jars.
 */
export function kafkaInstance({ name = 'kafka', port = 9092, controllerPort = 9093, heapMb = 512 } = {}) {
  const dir = join(SERVICES_DIR, name);
  return {
    name,
    port,
    controllerPort,
    heapMb,
    dir,
    brokers: `127.0.0.1:${port}`,
    dataDir: join(dir, 'data'),
    configDir: join(dir, 'config'),
    logsDir: join(dir, 'logs'),
    pidFile: join(dir, 'kafka.pid'),
    lockFile: join(dir, '.lock'),
  };
}

export const DEFAULT_KAFKA = kafkaInstance();

// ---------------------------------------------------------------------------------------------------
// Small process helpers

function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

function readPid(file) {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function cmdline(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

/** The pid of this instance's broker if it runs (the pid file's process is our java, not a reused pid). */
function brokerPid(inst) {
  const pid = readPid(inst.pidFile);
  if (pid === undefined || !isAlive(pid)) return undefined;
  const cmd = cmdline(pid);
  // /proc may be unreadable on exotic systems: then trust a live pid.
  if (cmd && !(cmd.includes('kafka.Kafka') && cmd.includes(inst.configDir))) return undefined;
  return pid;
}

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** An exclusive lock file (pid inside), so concurrent `start`s (parallel test runs) don't race. */
async function withLock(file, fn, timeoutMs = 10 * 60_000) {
  mkdirSync(dirname(file), { recursive: true });
  const deadline = Date.now() + timeoutMs;
  let announced = false;
  for (;;) {
    try {
      const fd = openSync(file, 'wx');
      writeFileSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      const owner = readPid(file);
      if (owner === undefined || !isAlive(owner)) {
        // Stale (owner died), or being written right now: a just-created file is given a moment.
        let age = Infinity;
        try {
          age = Date.now() - statSync(file).mtimeMs;
        } catch {}
        if (owner !== undefined || age > 2000) rmSync(file, { force: true });
        await sleep(50);
        continue;
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${file} (held by pid ${owner})`);
      if (!announced) say(`waiting for another services command (pid ${owner})`);
      announced = true;
      await sleep(200);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(file, { force: true });
  }
}

// ---------------------------------------------------------------------------------------------------
// Kafka: jars, storage, process, readiness

/** Copies the broker's jars from Maven Central (or ~/.m2) to .services/kafka/libs unless already there for this pom. */
export async function ensureKafkaLibs() {
  const t0 = Date.now();
  const version = kafkaVersion();
  const hash = createHash('sha256').update(readFileSync(POM)).digest('hex').slice(0, 16);
  const want = `${version} ${hash}`;
  const current = () => (existsSync(LIBS_MARKER) ? readFileSync(LIBS_MARKER, 'utf8').trim() : '');
  if (current() === want) return { version, cached: true, ms: Date.now() - t0, libsDir: LIBS_DIR };
  return withLock(join(SERVICES_DIR, 'kafka', '.libs-lock'), async () => {
    if (current() === want) return { version, cached: true, ms: Date.now() - t0, libsDir: LIBS_DIR };
    for (const tool of ['java', 'mvn']) {
      if (!have(tool)) throw new Error(`${tool} is not installed: Kafka needs Java 17+ and Maven 3 (apt-get install openjdk-17-jre-headless maven)`);
    }
    say(`resolving Apache Kafka ${version} from Maven Central (scripts/kafka/pom.xml)…`);
    const tmp = `${LIBS_DIR}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    const r = spawnSync(
      'mvn',
      ['-B', '-q', '-f', POM, 'dependency:copy-dependencies', `-DoutputDirectory=${tmp}`, '-DincludeScope=runtime'],
      { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
    );
    if (r.status !== 0) {
      rmSync(tmp, { recursive: true, force: true });
      throw new Error(`mvn dependency:copy-dependencies failed (exit ${r.status}):\n${(r.stdout + r.stderr).slice(-4000)}`);
    }
    const jars = readdirSync(tmp).filter((f) => f.endsWith('.jar'));
    if (!jars.some((f) => f === `kafka_2.13-${version}.jar`)) throw new Error(`mvn produced no kafka_2.13-${version}.jar in ${tmp}`);
    rmSync(LIBS_DIR, { recursive: true, force: true });
    renameSync(tmp, LIBS_DIR);
    writeFileSync(LIBS_MARKER, `${want}\n`);
    const ms = Date.now() - t0;
    say(`kafka ${version}: ${jars.length} jars in ${LIBS_DIR} (${secs(ms)})`);
    return { version, cached: false, ms, libsDir: LIBS_DIR };
  });
}

function serverProperties(inst) {
  return `# Written by scripts/services.mjs at every start: edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:${inst.controllerPort}
listeners=PLAINTEXT://127.0.0.1:${inst.port},CONTROLLER://127.0.0.1:${inst.controllerPort}
advertised.listeners=PLAINTEXT://127.0.0.1:${inst.port},CONTROLLER://127.0.0.1:${inst.controllerPort}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=${inst.dataDir}
# One node: every replication factor is 1.
num.partitions=6
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Groups form at once (no 3 s wait for more members), which tests and restarts rely on.
group.initial.rebalance.delay.ms=0
# Vigil creates its topics with the partition counts it wants.
auto.create.topics.enable=false
delete.topic.enable=true
num.network.threads=2
num.io.threads=4
log.retention.hours=24
log.segment.bytes=67108864
`;
}

function log4jProperties(inst) {
  const log = join(inst.logsDir, 'server.log');
  return `status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = ${log}
appender.file.filePattern = ${log}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
`;
}

function javaArgs(inst, mainClass, args) {
  return [
    `-Xms${Math.min(256, inst.heapMb)}m`,
    `-Xmx${inst.heapMb}m`,
    '-XX:+UseG1GC',
    '-XX:MaxGCPauseMillis=20',
    '-XX:InitiatingHeapOccupancyPercent=35',
    '-Djava.awt.headless=true',
    `-Dlog4j2.configurationFile=${join(inst.configDir, 'log4j2.properties')}`,
    `-Dkafka.logs.dir=${inst.logsDir}`,
    '-cp',
    `${LIBS_DIR}/*`,
    mainClass,
    ...args,
  ];
}

/** Writes the config; formats KRaft storage (standalone controller quorum) if the data dir has none for these ports. */
function prepareStorage(inst) {
  mkdirSync(inst.configDir, { recursive: true });
  mkdirSync(inst.logsDir, { recursive: true });
  const props = join(inst.configDir, 'server.properties');
  writeFileSync(props, serverProperties(inst));
  writeFileSync(join(inst.configDir, 'log4j2.properties'), log4jProperties(inst));
  // The controller's address is part of the formatted quorum: other ports mean a fresh format.
  const portsFile = join(inst.dir, 'ports');
  const ports = `${inst.port} ${inst.controllerPort}`;
  const formatted = existsSync(join(inst.dataDir, 'meta.properties')) && existsSync(portsFile) && readFileSync(portsFile, 'utf8').trim() === ports;
  if (formatted) return { formatted: false, ms: 0 };
  const t0 = Date.now();
  rmSync(inst.dataDir, { recursive: true, force: true });
  mkdirSync(inst.dataDir, { recursive: true });
  // A cluster id is 16 random bytes in URL-safe base64 without padding (what `kafka-storage random-uuid` prints).
  const clusterId = randomBytes(16).toString('base64url');
  const r = spawnSync('java', javaArgs(inst, 'kafka.tools.StorageTool', ['format', '--standalone', '-t', clusterId, '-c', props]), {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (r.status !== 0) throw new Error(`kafka storage format failed (exit ${r.status}):\n${(r.stdout + r.stderr).slice(-4000)}`);
  writeFileSync(join(inst.dir, 'cluster-id'), `${clusterId}\n`);
  writeFileSync(portsFile, `${ports}\n`);
  const ms = Date.now() - t0;
  say(`${inst.name}: formatted KRaft storage, cluster ${clusterId} (${secs(ms)})`);
  return { formatted: true, ms };
}

let kafkajsModule;
async function loadKafkajs() {
  if (!kafkajsModule) {
    try {
      kafkajsModule = (await import('kafkajs')).default;
    } catch (e) {
      throw new Error(`kafkajs is not installed (run npm ci first): ${e.message}`);
    }
  }
  return kafkajsModule;
}

/** Asks the broker until it answers describeCluster with itself in it. */
export async function waitKafkaReady(brokers, { timeoutMs = 120_000, isDead } = {}) {
  const { Kafka, logLevel } = await loadKafkajs();
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    if (isDead?.()) throw new Error(`the broker exited while starting${lastError ? ` (${lastError})` : ''}`);
    const kafka = new Kafka({
      clientId: 'vigil-services',
      brokers: [brokers],
      logLevel: logLevel.NOTHING,
      connectionTimeout: 1000,
      requestTimeout: 3000,
      retry: { retries: 0 },
    });
    const admin = kafka.admin();
    try {
      await admin.connect();
      const cluster = await admin.describeCluster();
      if (cluster.brokers.length > 0) return cluster;
      lastError = 'no broker in the cluster metadata yet';
    } catch (e) {
      lastError = e.message;
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
    if (Date.now() > deadline) throw new Error(`Kafka on ${brokers} not ready after ${secs(timeoutMs)}: ${lastError}`);
    await sleep(250);
  }
}

async function kafkaAnswers(brokers) {
  try {
    await waitKafkaReady(brokers, { timeoutMs: 0 });
    return true;
  } catch {
    return false;
  }
}

function tail(file, lines = 30, from = 0) {
  try {
    return readFileSync(file).subarray(from).toString('utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/** Starts the instance's broker if it isn't running, then waits until it answers. Idempotent. */
export async function startKafka(inst = DEFAULT_KAFKA, { timeoutMs = 180_000 } = {}) {
  const t0 = Date.now();
  return withLock(inst.lockFile, async () => {
    const running = brokerPid(inst);
    if (running !== undefined) {
      const cluster = await waitKafkaReady(inst.brokers, { timeoutMs, isDead: () => !isAlive(running) });
      const ms = Date.now() - t0;
      say(`${inst.name}: already running (pid ${running}), ready on ${inst.brokers} (${secs(ms)})`);
      return { pid: running, started: false, ms, clusterId: cluster.clusterId, brokers: inst.brokers };
    }
    rmSync(inst.pidFile, { force: true });
    if (await kafkaAnswers(inst.brokers)) {
      // Someone else's broker (another checkout, a manual start): use it, don't start a second one.
      say(`${inst.name}: a broker not started by this script answers on ${inst.brokers}; using it`);
      return { pid: undefined, started: false, ms: Date.now() - t0, brokers: inst.brokers };
    }
    if (!have('java')) throw new Error('java is not installed: Kafka needs Java 17+ (apt-get install openjdk-17-jre-headless)');
    const libs = await ensureKafkaLibs();
    if (libs.cached) say(`kafka ${libs.version}: jars cached in ${LIBS_DIR}`);
    prepareStorage(inst);
    const out = join(inst.logsDir, 'kafka.out');
    const serverLog = join(inst.logsDir, 'server.log');
    const logStart = existsSync(serverLog) ? statSync(serverLog).size : 0;
    const fd = openSync(out, 'w');
    const t1 = Date.now();
    const child = spawn('java', javaArgs(inst, 'kafka.Kafka', [join(inst.configDir, 'server.properties')]), {
      cwd: inst.dir,
      detached: true,
      stdio: ['ignore', fd, fd],
    });
    closeSync(fd);
    let exited = false;
    let spawnError = '';
    child.on('exit', () => (exited = true));
    child.on('error', (e) => {
      exited = true;
      spawnError = e.message;
    });
    child.unref();
    writeFileSync(inst.pidFile, `${child.pid}\n`);
    try {
      const cluster = await waitKafkaReady(inst.brokers, { timeoutMs, isDead: () => exited || !isAlive(child.pid) });
      const ms = Date.now() - t0;
      say(`${inst.name}: Apache Kafka ${libs.version} started (pid ${child.pid}), ready on ${inst.brokers} in ${secs(Date.now() - t1)} (total ${secs(ms)})`);
      return { pid: child.pid, started: true, ms, clusterId: cluster.clusterId, brokers: inst.brokers };
    } catch (e) {
      if (child.pid !== undefined && isAlive(child.pid)) process.kill(child.pid, 'SIGKILL');
      rmSync(inst.pidFile, { force: true });
      throw new Error(`${e.message}${spawnError ? ` (${spawnError})` : ''}\n--- ${out}\n${tail(out)}\n--- ${serverLog} (this start)\n${tail(serverLog, 30, logStart)}`);
    }
  });
}

/** Stops the instance's broker: SIGTERM (controlled shutdown), then SIGKILL after timeoutMs. */
export async function stopKafka(inst = DEFAULT_KAFKA, { timeoutMs = 30_000 } = {}) {
  const t0 = Date.now();
  return withLock(inst.lockFile, async () => {
    const pid = brokerPid(inst);
    if (pid === undefined) {
      rmSync(inst.pidFile, { force: true });
      say(`${inst.name}: not running`);
      return { stopped: false, ms: Date.now() - t0 };
    }
    process.kill(pid, 'SIGTERM');
    const deadline = Date.now() + timeoutMs;
    while (isAlive(pid) && Date.now() < deadline) await sleep(100);
    let killed = false;
    if (isAlive(pid)) {
      killed = true;
      process.kill(pid, 'SIGKILL');
      while (isAlive(pid)) await sleep(50);
    }
    rmSync(inst.pidFile, { force: true });
    const ms = Date.now() - t0;
    say(`${inst.name}: stopped pid ${pid}${killed ? ' with SIGKILL after SIGTERM timed out' : ''} (${secs(ms)})`);
    return { stopped: true, killed, ms };
  });
}

export async function kafkaStatus(inst = DEFAULT_KAFKA) {
  const pid = brokerPid(inst);
  const answers = await kafkaAnswers(inst.brokers);
  return { name: inst.name, brokers: inst.brokers, pid, answers, dir: inst.dir };
}

// ---------------------------------------------------------------------------------------------------
// Redis

/** True when Redis answers PING on host:port. */
export function redisAnswers({ host, port } = REDIS, timeoutMs = 1000) {
  return new Promise((resolvePing) => {
    const socket = connect({ host, port });
    let buf = '';
    const done = (ok) => {
      clearTimeout(timer);
      socket.destroy();
      resolvePing(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => {
      buf += d.toString('utf8');
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
    socket.on('error', () => done(false));
  });
}

export async function startRedis() {
  const t0 = Date.now();
  if (await redisAnswers()) {
    say(`redis: answers on ${REDIS.host}:${REDIS.port}`);
    return { started: false, ms: Date.now() - t0 };
  }
  if (!have('redis-server')) throw new Error('redis-server is not installed (apt-get install redis-server)');
  mkdirSync(SERVICES_DIR, { recursive: true });
  const args = ['--daemonize', 'yes', '--bind', REDIS.host, '--port', String(REDIS.port), '--save', '', '--appendonly', 'no', '--pidfile', REDIS.pidFile];
  const r = spawnSync('redis-server', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) throw new Error(`redis-server failed (exit ${r.status}): ${r.stdout}${r.stderr}`);
  const deadline = Date.now() + 15_000;
  while (!(await redisAnswers())) {
    if (Date.now() > deadline) throw new Error(`redis-server started but does not answer on ${REDIS.host}:${REDIS.port}`);
    await sleep(100);
  }
  const ms = Date.now() - t0;
  say(`redis: started on ${REDIS.host}:${REDIS.port} (${secs(ms)})`);
  return { started: true, ms };
}

/** Stops Redis only if this script started it (its pid file is ours); a Redis someone else runs is left alone. */
export async function stopRedis() {
  const pid = readPid(REDIS.pidFile);
  if (pid === undefined || !isAlive(pid) || !cmdline(pid).includes('redis-server')) {
    rmSync(REDIS.pidFile, { force: true });
    say('redis: not started by this script; left alone');
    return { stopped: false };
  }
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 10_000;
  while (isAlive(pid) && Date.now() < deadline) await sleep(50);
  if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  try {
    unlinkSync(REDIS.pidFile);
  } catch {}
  say(`redis: stopped pid ${pid}`);
  return { stopped: true };
}

// ---------------------------------------------------------------------------------------------------
// Commands

/** `start`: Kafka and Redis (or one of them); returns timings. */
export async function start(which = 'all', options = {}) {
  quiet = options.quiet ?? quiet;
  const t0 = Date.now();
  const out = {};
  // Redis first: it is instant, and a broker start failing should not leave Redis unchecked.
  if (which === 'all' || which === 'redis') out.redis = await startRedis();
  if (which === 'all' || which === 'kafka') out.kafka = await startKafka(DEFAULT_KAFKA);
  out.ms = Date.now() - t0;
  say(`start done in ${secs(out.ms)}`);
  return out;
}

export async function stop(which = 'kafka') {
  const out = {};
  if (which === 'all' || which === 'kafka') out.kafka = await stopKafka(DEFAULT_KAFKA);
  if (which === 'all' || which === 'redis') out.redis = await stopRedis();
  return out;
}

export async function status() {
  const lines = [];
  const instances = existsSync(SERVICES_DIR)
    ? readdirSync(SERVICES_DIR).filter((d) => existsSync(join(SERVICES_DIR, d, 'ports')))
    : [];
  if (!instances.includes('kafka')) instances.unshift('kafka');
  let version = '?';
  try {
    version = existsSync(LIBS_MARKER) ? readFileSync(LIBS_MARKER, 'utf8').split(' ')[0] : `${kafkaVersion()} (jars not laid out yet)`;
  } catch {}
  for (const name of instances) {
    let ports = [9092, 9093];
    try {
      ports = readFileSync(join(SERVICES_DIR, name, 'ports'), 'utf8').trim().split(' ').map(Number);
    } catch {}
    const s = await kafkaStatus(kafkaInstance({ name, port: ports[0], controllerPort: ports[1] }));
    const state = s.pid !== undefined ? `running, pid ${s.pid}` : s.answers ? 'a broker not started by this script' : 'stopped';
    lines.push(`kafka${name === 'kafka' ? '' : ` (${name})`}: ${state}; ${s.answers ? 'answers' : 'does not answer'} on ${s.brokers} (Apache Kafka ${version}, ${s.dir})`);
  }
  const redisPid = readPid(REDIS.pidFile);
  const redisOk = await redisAnswers();
  lines.push(
    `redis: ${redisOk ? 'answers' : 'does not answer'} on ${REDIS.host}:${REDIS.port}${redisPid && isAlive(redisPid) ? ` (started by this script, pid ${redisPid})` : ''}`,
  );
  return lines;
}

async function main(argv) {
  const [command = 'status', which] = argv;
  const targets = ['kafka', 'redis', 'all'];
  if (which !== undefined && !targets.includes(which)) throw new Error(`unknown service ${which} (one of ${targets.join(', ')})`);
  switch (command) {
    case 'start':
      await start(which ?? 'all');
      return;
    case 'stop':
      await stop(which ?? 'kafka');
      return;
    case 'restart':
      await stop(which ?? 'kafka');
      await start(which ?? 'kafka');
      return;
    case 'status':
      for (const line of await status()) console.log(line);
      return;
    default:
      throw new Error(`usage: node scripts/services.mjs start|stop|restart|status [kafka|redis|all]`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (e) => {
      console.error(`services: ${e.message}`);
      process.exit(1);
    },
  );
}
