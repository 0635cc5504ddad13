#!/usr/bin/env -S node --max-semi-space-size=64
// A 64 MB young generation (V8 semi-space; Node's default is 16 MB): at replay speed the events in flight
// between feed, transport and detectors outlive two scavenges of a 16 MB one and get promoted, which cost
// ~25% of a max-speed replay's CPU (bench/replay.ts). The same flag is in package.json's start and bench
// scripts and the Dockerfile (test/compose.test.ts keeps them equal); `node bin/vigil.js` runs without it.
// Runs the TypeScript sources directly through tsx, so `npx vigil` always runs the checkout as it is.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli.ts');
process.exitCode = await main(process.argv.slice(2));
