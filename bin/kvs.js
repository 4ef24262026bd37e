#!/usr/bin/env node
// The `kvs` command. In a checkout it runs the TypeScript source (Node 24 strips the types), so
// `npx kvs` needs no build; an installed package ships no source and runs the compiled JavaScript
// of dist/ (Node does not strip types under node_modules).
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/kvs.ts', import.meta.url);
await import(existsSync(source) ? source.href : new URL('../dist/cli/kvs.js', import.meta.url).href);
