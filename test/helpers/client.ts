import { print, type DocumentNode } from 'graphql';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';

export interface GraphQLErrorJson {
  message: string;
  path?: (string | number)[];
  extensions?: { code?: string; field?: string; index?: number; [k: string]: unknown };
}

export interface GqlResult<T> {
  status: number;
  data: T | null | undefined;
  errors: GraphQLErrorJson[] | undefined;
}

export interface RequestOptions {
  token?: string;
  headers?: Record<string, string>;
  /** Multipart requests get Apollo-Require-Preflight unless false (CSRF tests). */
  preflight?: boolean;
}

/** Replaces every Blob in `value` by null and lists where they were (what extract-files does for apollo-upload-client). */
function extractFiles(value: unknown): { clone: unknown; files: Map<Blob, string[]> } {
  const files = new Map<Blob, string[]>();
  const walk = (v: unknown, p: string): unknown => {
    if (v instanceof Blob) {
      const list = files.get(v) ?? [];
      list.push(p);
      files.set(v, list);
      return null;
    }
    if (Array.isArray(v)) return v.map((x, i) => walk(x, `${p}.${i}`));
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, `${p}.${k}`)]));
    return v;
  };
  return { clone: walk(value, 'variables'), files };
}

/**
 * Sends one GraphQL operation over HTTP as a browser client would: JSON when it
 * carries no file, otherwise a GraphQL multipart request (operations, map, then
 * the files in map order), exactly the wire format of apollo-upload-client.
 */
export async function gql<TResult, TVariables>(
  baseUrl: string,
  document: TypedDocumentNode<TResult, TVariables> | DocumentNode,
  variables: TVariables,
  options: RequestOptions = {},
): Promise<GqlResult<TResult>> {
  const query = print(document);
  const headers: Record<string, string> = { ...(options.token ? { authorization: `Bearer ${options.token}` } : {}), ...options.headers };
  const { clone, files } = extractFiles(variables);
  let body: string | FormData;
  if (files.size === 0) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify({ query, variables });
  } else {
    if (options.preflight !== false) headers['apollo-require-preflight'] = 'true';
    const form = new FormData();
    form.set("operations", JSON.stringify({ query, variables: clone }));
    const map: Record<string, string[]> = {};
    let i = 0;
    for (const paths of files.values()) map[String(i++)] = paths;
    form.set('map', JSON.stringify(map));
    i = 0;
    for (const file of files.keys()) form.set(String(i++), file, file instanceof File ? file.name : 'blob');
    body = form;
  }
  const res = await fetch(`${baseUrl}/graphql`, { method: 'POST', headers, body });
  const text = await res.text();
  let json: { data?: TResult | null; errors?: GraphQLErrorJson[] };
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`non-JSON response ${res.status}: ${text.slice(0, 300)}`);
  }
  return { status: res.status, data: json.data, errors: json.errors };
}

/** The data of a successful operation; fails the test with the errors otherwise. */
export async function ok<TResult, TVariables>(
  baseUrl: string,
  document: TypedDocumentNode<TResult, TVariables>,
  variables: TVariables,
  options: RequestOptions = {},
): Promise<TResult> {
  const r = await gql(baseUrl, document, variables, options);
  if (r.errors?.length || !r.data) throw new Error(`GraphQL errors (${r.status}): ${JSON.stringify(r.errors)}`);
  return r.data;
}

/** The first error's code of a failed operation. */
export function codeOf(r: GqlResult<unknown>): string | undefined {
  return r.errors?.[0]?.extensions?.code;
}
