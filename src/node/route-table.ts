// The public routes as a table: each entry is a method, a path template in OpenAPI form
// (`/kvs/{key}`, `/shard/members/{id}`) and the handler that answers it. The dispatcher serves a
// request only through an entry (public-routes.ts), and GET /openapi.json describes exactly the
// entries (openapi.ts; test/integration/openapi.test.ts checks both ways), so the table is the
// truth about what the server answers. A request no entry serves gets the table's `unrouted`
// answer: 405 on a path whose other methods are served (where the API has always said so), else
// the 404 "No route".

import type { HttpReply } from './http-server.ts';

/** The methods of public routes (HEAD: the dashboard's page, for a browser's or a checker's HEAD). */
export type RouteMethod = 'GET' | 'PUT' | 'DELETE' | 'HEAD';

export interface Route<H> {
  method: RouteMethod;
  /** OpenAPI path template: literal segments and `{name}` segments (a parameter is a whole segment). */
  path: string;
  /**
   * What the template's last parameter takes: one segment, possibly empty (`segment`, the
   * default); the rest of the path, slashes included (`rest`: a key may hold `/`); or one segment
   * with whatever segments follow it ignored (`segment, rest ignored`: the /shard/<action>/<id>
   * routes have always answered `/shard/members/s0/x` as `/shard/members/s0`).
   */
  last?: 'segment' | 'rest' | 'segment, rest ignored';
  handler: H;
}

/** A request an entry serves: the entry and the path's parameters, still percent-encoded. */
export interface RouteMatch<H> {
  route: Route<H>;
  params: Record<string, string>;
}

interface Compiled<H> {
  route: Route<H>;
  pattern: RegExp;
  names: string[];
}

const PARAMETER = /^\{([A-Za-z][A-Za-z0-9_-]*)\}$/;

/** The parameter names of a path template, in order (`/shard/members/{id}`: ['id']). */
export function templateParameters(path: string): string[] {
  return path
    .split('/')
    .map((segment) => PARAMETER.exec(segment)?.[1])
    .filter((name): name is string => name !== undefined);
}

function compile<H>(route: Route<H>): Compiled<H> {
  if (!route.path.startsWith('/')) throw new Error(`route template ${route.path} does not start with /`);
  const segments = route.path.split('/');
  const names = templateParameters(route.path);
  const last = route.last ?? 'segment';
  const lastParameter = segments.findLastIndex((segment) => PARAMETER.test(segment));
  if (last !== 'segment' && lastParameter !== segments.length - 1) {
    throw new Error(`route template ${route.path}: '${last}' needs a parameter as its last segment`);
  }
  const source = segments
    .map((segment, i) => {
      if (!PARAMETER.test(segment)) {
        if (segment.includes('{') || segment.includes('}')) throw new Error(`route template ${route.path}: a parameter must be a whole segment`);
        return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      }
      if (i !== segments.length - 1 || last === 'segment') return '([^/]*)';
      return last === 'rest' ? '(.*)' : '([^/]*)(?:/.*)?';
    })
    .join('/');
  return { route, pattern: new RegExp(`^${source}$`), names };
}

export class RouteTable<H> {
  readonly routes: readonly Route<H>[];
  private readonly compiled: Compiled<H>[];
  private readonly unroutedReply: (method: string, path: string) => HttpReply;

  /**
   * `unrouted`: the answer to a request no entry serves (it may throw the router's BadRequest).
   * Two entries for the same method and template are a mistake, refused here.
   */
  constructor(routes: readonly Route<H>[], unrouted: (method: string, path: string) => HttpReply) {
    const seen = new Set<string>();
    for (const route of routes) {
      const id = `${route.method} ${route.path}`;
      if (seen.has(id)) throw new Error(`route ${id} is in the table twice`);
      seen.add(id);
    }
    this.routes = routes;
    this.compiled = routes.map((route) => compile(route));
    this.unroutedReply = unrouted;
  }

  /** The entry that serves `method` on `path` (a path still percent-encoded), or null. */
  match(method: string, path: string): RouteMatch<H> | null {
    for (const { route, pattern, names } of this.compiled) {
      if (route.method !== method) continue;
      const found = pattern.exec(path);
      if (found === null) continue;
      const params: Record<string, string> = {};
      names.forEach((name, i) => (params[name] = found[i + 1] ?? ''));
      return { route, params };
    }
    return null;
  }

  /** The methods some entry serves on `path` (empty: the table has no such path). */
  methodsOn(path: string): RouteMethod[] {
    return this.compiled.filter(({ pattern }) => pattern.test(path)).map(({ route }) => route.method);
  }

  /** What a request gets that no entry serves: a 405 or the 404 "No route" (see the constructor). */
  unrouted(method: string, path: string): HttpReply {
    return this.unroutedReply(method, path);
  }
}
