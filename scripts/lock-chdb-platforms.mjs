#!/usr/bin/env node
// chdb ships its engine in one optional package per platform. A registry that serves only the
// linux-x64 one leaves the others out of package-lock.json, and `npm ci` then refuses the lock
// ("Missing: @chdb/lib-darwin-arm64@ from lock file"). This adds lock entries for the other platforms'
// packages (with their os/cpu, so npm never fetches them here); `npm install` keeps them afterwards.
// Run it after regenerating package-lock.json from scratch.
import { readFileSync, writeFileSync } from 'node:fs';

const lock = JSON.parse(readFileSync('package-lock.json', 'utf8'));
const pk = lock.packages;
const chdb = pk['node_modules/chdb'];
const platforms = { 'darwin-arm64': ['darwin', 'arm64'], 'darwin-x64': ['darwin', 'x64'], 'linux-arm64-gnu': ['linux', 'arm64'], 'linux-x64-gnu': ['linux', 'x64'] };
let added = 0;
for (const [name, version] of Object.entries(chdb.optionalDependencies ?? {})) {
  const key = `node_modules/${name}`;
  if (pk[key]) continue;
  const [os, cpu] = platforms[name.replace('@chdb/lib-', '')] ?? [];
  if (!os) throw new Error(`unknown chdb platform package ${name}`);
  pk[key] = { version, cpu: [cpu], ...(os === 'linux' ? { libc: ['glibc'] } : {}), license: 'Apache-2.0', optional: true, os: [os] };
  added++;
}
lock.packages = Object.fromEntries(Object.entries(pk).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : a > b ? 1 : 0)));
writeFileSync('package-lock.json', `${JSON.stringify(lock, null, 2)}\n`);
console.log(`added ${added} chdb platform entries`);
