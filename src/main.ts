#!/usr/bin/env node
// Loading the modules is most of a short command's time (and, run from source, stripping their
// types): Node's compile cache keeps that work between runs and halves start-up. It only covers
// modules loaded after it is on, hence this entry point of its own. Where the cache folder cannot
// be written, Node carries on without it.
import { enableCompileCache } from 'node:module';

enableCompileCache();
await import('./cli-main.ts');
