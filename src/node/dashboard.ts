// GET /ui/: the live dashboard, one self-contained HTML page (ui/dashboard.html: inline CSS and
// JS, nothing fetched from elsewhere) that polls this node's GET /status/store every second.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HttpReply } from './http-server.ts';
import { json } from './replies.ts';

/** The page and its headers. */
interface Page {
  html: Buffer;
  headers: Record<string, string>;
}

/** 'sha256-...' of each inline <script> and <style> element's text: what the CSP lets run. */
function inlineHashes(html: string, tag: 'script' | 'style'): string[] {
  const hashes: string[] = [];
  for (const match of html.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))) {
    hashes.push(`'sha256-${createHash('sha256').update(match[1] ?? '', 'utf8').digest('base64')}'`);
  }
  return hashes;
}

/** Reads the page and builds its Content-Security-Policy: only its own inline script and style, requests to this origin only. */
export function loadDashboard(file = join(import.meta.dirname, 'ui', 'dashboard.html')): Page {
  const text = readFileSync(file, 'utf8');
  const csp = [
    "default-src 'none'",
    `script-src ${inlineHashes(text, 'script').join(' ')}`,
    `style-src ${inlineHashes(text, 'style').join(' ')}`,
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return {
    html: Buffer.from(text, 'utf8'),
    headers: {
      'content-security-policy': csp,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'cache-control': 'no-cache',
    },
  };
}

/** Read once, when the runtime is loaded: a missing page fails the start, not a request. */
const page = loadDashboard();

/** The answer to a request for /ui or /ui/ (any other path under /ui/ is a 404). */
export function dashboardRoute(method: string, path: string): HttpReply {
  if (method !== 'GET' && method !== 'HEAD') return json(405, { error: `Method ${method} is not allowed on ${path}` });
  if (path === '/ui') return { status: 301, body: { location: '/ui/' }, headers: { location: '/ui/' } };
  if (path !== '/ui/') return json(404, { error: `No route for ${method} ${path}` });
  const { html, headers } = page;
  return { status: 200, body: html, contentType: 'text/html; charset=utf-8', headers };
}
