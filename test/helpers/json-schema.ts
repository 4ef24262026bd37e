// A small JSON Schema checker for the subset of keywords src/node/openapi.ts uses: type (a name or
// a list, 'null' included), properties, required, additionalProperties, items, enum, const, oneOf,
// anyOf, $ref (local: '#/...'), minimum; description is an annotation. A schema with any other
// keyword is refused (`keywordProblems`, and `validate` throws on meeting one), so the document
// cannot lean on a keyword this checker would silently ignore.

import { isDeepStrictEqual } from 'node:util';

const CHECKED = new Set(['type', 'properties', 'required', 'additionalProperties', 'items', 'enum', 'const', 'oneOf', 'anyOf', '$ref', 'minimum']);
const ANNOTATIONS = new Set(['description', 'title']);
const TYPES = new Set(['object', 'array', 'string', 'integer', 'number', 'boolean', 'null']);

type Schema = Record<string, unknown>;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The value a local JSON pointer (`#/components/schemas/Error`) names in `root`; undefined when none. */
export function resolvePointer(root: unknown, ref: string): unknown {
  if (!ref.startsWith('#')) return undefined;
  if (ref === '#') return root;
  if (!ref.startsWith('#/')) return undefined;
  let at: unknown = root;
  for (const raw of ref.slice(2).split('/')) {
    const token = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
    if (!isObject(at) && !Array.isArray(at)) return undefined;
    if (!Object.hasOwn(at, token)) return undefined;
    at = (at as Record<string, unknown>)[token];
  }
  return at;
}

/** Keywords of `schema` (and of every schema inside it) that this checker does not know, with where. */
export function keywordProblems(schema: unknown, where = '#'): string[] {
  if (schema === true || schema === false) return [];
  if (!isObject(schema)) return [`${where}: a schema must be an object or a boolean`];
  const out: string[] = [];
  for (const [keyword, value] of Object.entries(schema)) {
    if (ANNOTATIONS.has(keyword)) continue;
    if (!CHECKED.has(keyword)) {
      out.push(`${where}: keyword ${keyword} is not checked`);
      continue;
    }
    if (keyword === 'properties' && isObject(value)) for (const [name, sub] of Object.entries(value)) out.push(...keywordProblems(sub, `${where}/properties/${name}`));
    if ((keyword === 'items' || keyword === 'additionalProperties') && typeof value !== 'boolean') out.push(...keywordProblems(value, `${where}/${keyword}`));
    if (keyword === 'oneOf' || keyword === 'anyOf') {
      if (!Array.isArray(value) || value.length === 0) out.push(`${where}/${keyword}: must be a non-empty list`);
      else value.forEach((sub, i) => out.push(...keywordProblems(sub, `${where}/${keyword}/${i}`)));
    }
    if (keyword === 'type') {
      const names = Array.isArray(value) ? value : [value];
      for (const name of names) if (typeof name !== 'string' || !TYPES.has(name)) out.push(`${where}/type: unknown type ${JSON.stringify(name)}`);
    }
  }
  return out;
}

function typeMatches(name: string, value: unknown): boolean {
  switch (name) {
    case 'object':
      return isObject(value);
    case 'array':
      return Array.isArray(value);
    case 'string':
      return typeof value === 'string';
    case 'integer':
      return typeof value === 'number' && Number.isInteger(value);
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'boolean':
      return typeof value === 'boolean';
    case 'null':
      return value === null;
    default:
      throw new Error(`unknown type ${name}`);
  }
}

/**
 * What is wrong with `value` by `schema` (empty: it validates). `root`: the document `$ref`s point
 * into. Throws on a `$ref` that does not resolve or a keyword outside the subset.
 */
export function validate(schema: unknown, value: unknown, root: unknown, where = '$'): string[] {
  if (schema === true) return [];
  if (schema === false) return [`${where}: no value is allowed here`];
  if (!isObject(schema)) throw new Error(`${where}: a schema must be an object or a boolean`);
  const s = schema as Schema;
  for (const keyword of Object.keys(s)) {
    if (!CHECKED.has(keyword) && !ANNOTATIONS.has(keyword)) throw new Error(`${where}: keyword ${keyword} is not checked by this checker`);
  }
  const out: string[] = [];
  if (typeof s.$ref === 'string') {
    const target = resolvePointer(root, s.$ref);
    if (target === undefined) throw new Error(`${where}: $ref ${s.$ref} does not resolve`);
    out.push(...validate(target, value, root, where));
  }
  if (s.type !== undefined) {
    const names = (Array.isArray(s.type) ? s.type : [s.type]) as string[];
    if (!names.some((name) => typeMatches(name, value))) {
      // Nothing more to say about a value of the wrong type.
      return [...out, `${where}: expected ${names.join(' or ')}, got ${JSON.stringify(value)}`];
    }
  }
  if (Object.hasOwn(s, 'const') && !isDeepStrictEqual(s.const, value)) out.push(`${where}: expected ${JSON.stringify(s.const)}, got ${JSON.stringify(value)}`);
  if (Array.isArray(s.enum) && !s.enum.some((option) => isDeepStrictEqual(option, value))) {
    out.push(`${where}: ${JSON.stringify(value)} is not one of ${JSON.stringify(s.enum)}`);
  }
  if (typeof s.minimum === 'number' && typeof value === 'number' && value < s.minimum) out.push(`${where}: ${value} is below the minimum ${s.minimum}`);
  if (isObject(value)) {
    const properties = isObject(s.properties) ? s.properties : {};
    for (const name of Array.isArray(s.required) ? (s.required as string[]) : []) {
      if (!Object.hasOwn(value, name)) out.push(`${where}: required property ${JSON.stringify(name)} is missing`);
    }
    for (const [name, sub] of Object.entries(value)) {
      if (Object.hasOwn(properties, name)) out.push(...validate(properties[name], sub, root, `${where}.${name}`));
      else if (s.additionalProperties === false) out.push(`${where}: property ${JSON.stringify(name)} is not allowed`);
      else if (isObject(s.additionalProperties)) out.push(...validate(s.additionalProperties, sub, root, `${where}.${name}`));
    }
  }
  if (Array.isArray(value) && s.items !== undefined) value.forEach((item, i) => out.push(...validate(s.items, item, root, `${where}[${i}]`)));
  if (Array.isArray(s.anyOf) && !s.anyOf.some((sub) => validate(sub, value, root, where).length === 0)) {
    out.push(`${where}: matches none of anyOf (${s.anyOf.map((sub) => validate(sub, value, root, where).join('; ')).join(' | ')})`);
  }
  if (Array.isArray(s.oneOf)) {
    const matching = s.oneOf.filter((sub) => validate(sub, value, root, where).length === 0).length;
    if (matching !== 1) out.push(`${where}: matches ${matching} of oneOf, not exactly 1`);
  }
  return out;
}
