// The one way pages talk to /api/v1: JSON in and out, Django's CSRF token on writes, errors as
// ApiError carrying the server's `message`. Calls name an OpenAPI path template (a key of the
// types generated from /api/schema/), so the URL's parameters, the request body and the result
// are checked against the schema when the frontend is type-checked.

import type { components, paths } from "../../generated/openapi";

export type Schemas = components["schemas"];
export type Job = Schemas["Job"];
export type ShareLink = Schemas["ShareLink"];
export type SavedState = Schemas["SavedState"];

type Method = "get" | "post" | "put" | "patch" | "delete";
type SuccessStatus = 200 | 201 | 202 | 204;

/** Path templates that have an operation for `M`, e.g. PathsWith<"post">. */
export type PathsWith<M extends Method> = {
  [P in keyof paths]: paths[P] extends { [K in M]: object } ? P : never;
}[keyof paths];
type Operation<P extends keyof paths, M extends Method> = paths[P] extends { [K in M]: infer O }
  ? O
  : never;

type PathParams<O> = O extends { parameters: { path: infer X } } ? X : undefined;
type QueryParams<O> = O extends { parameters: { query?: infer Q } } ? Exclude<Q, undefined> : never;
type JsonBody<O> = O extends { requestBody?: never }
  ? undefined
  : O extends { requestBody: { content: { "application/json": infer B } } }
    ? B
    : O extends { requestBody?: { content: { "application/json": infer B } } }
      ? B | undefined
      : undefined;
/** The JSON body of the operation's 2xx answer (undefined for 204 / no content). */
export type Result<O> = O extends { responses: infer R }
  ? {
      [S in keyof R & SuccessStatus]: R[S] extends { content: { "application/json": infer B } }
        ? B
        : undefined;
    }[keyof R & SuccessStatus]
  : never;

interface CommonOptions {
  signal?: AbortSignal;
  /** The message when the server's error carries none, e.g. (status) => `Saving failed (${status}).` */
  fallback?: (status: number) => string;
}
/** What a call takes: `path` when the template has parameters, `body` when it takes JSON. */
export type CallOptions<O> = CommonOptions &
  ([PathParams<O>] extends [undefined] ? { path?: undefined } : { path: PathParams<O> }) &
  ([QueryParams<O>] extends [never] ? { query?: undefined } : { query?: QueryParams<O> }) &
  ([JsonBody<O>] extends [undefined] ? { body?: undefined } : { body: JsonBody<O> });
type Args<O> =
  object extends CallOptions<O> ? [options?: CallOptions<O>] : [options: CallOptions<O>];

/** A failed API call: HTTP status (0 when the server was not reached), message for a person. */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly status: number,
    message: string,
    readonly body: unknown = null,
  ) {
    super(message);
  }
}

export const defaultFallback = (status: number): string => `The request failed (HTTP ${status}).`;

/** The server's `message` from an error body (parsed or JSON text), else undefined. */
export function serverMessage(body: unknown): string | undefined {
  let value = body;
  if (typeof value === "string") {
    try {
      value = JSON.parse(value) as unknown;
    } catch {
      return undefined;
    }
  }
  if (value && typeof value === "object" && "message" in value) {
    const message = (value as { message: unknown }).message;
    if (typeof message === "string" && message) return message;
  }
  return undefined;
}

// --- CSRF ----------------------------------------------------------------------------------

let explicitToken: string | undefined;

/** Use this token for writes (pages that get one from the server, e.g. the viewer's config). */
export function setCsrfToken(token: string | undefined): void {
  explicitToken = token || undefined;
}

/**
 * Django's CSRF token: the one set by setCsrfToken, else a `{% csrf_token %}` field on the page,
 * else the `csrftoken` cookie; "" when there is none (anonymous reads need none).
 */
export function csrfToken(doc: Document = document): string {
  if (explicitToken) return explicitToken;
  const input = doc.querySelector<HTMLInputElement>("input[name=csrfmiddlewaretoken]");
  if (input?.value) return input.value;
  const match = /(?:^|;\s*)csrftoken=([^;]+)/.exec(doc.cookie);
  return match?.[1] ? decodeURIComponent(match[1]) : "";
}

// --- URLs ----------------------------------------------------------------------------------

type ParamValue = string | number;

/** "/api/v1/jobs/{id}/" + {id: 3} -> "/api/v1/jobs/3/" (values URL-encoded), plus a query. */
export function buildUrl(
  template: string,
  path: Readonly<Record<string, ParamValue>> = {},
  query: Readonly<Record<string, ParamValue | boolean | null | undefined>> = {},
): string {
  const url = template.replace(/\{([^}]+)\}/g, (_, name: string) => {
    const value = path[name];
    if (value === undefined || value === "") {
      throw new Error(`No value for {${name}} in ${template}.`);
    }
    return encodeURIComponent(String(value));
  });
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null) search.append(key, String(value));
  }
  const qs = search.toString();
  return qs ? `${url}?${qs}` : url;
}

/**
 * The parameters of a server-rendered URL for a path template:
 * pathParams("/api/v1/datasets/{slug}/share-links/", "/api/v1/datasets/cells/share-links/")
 * gives {slug: "cells"}. Throws when the URL does not have the template's shape.
 */
export function pathParams<P extends keyof paths>(
  template: P,
  url: string,
): Record<string, string> {
  const names: string[] = [];
  const pattern = template
    .split(/(\{[^}]+\})/)
    .map((part) => {
      const name = /^\{([^}]+)\}$/.exec(part)?.[1];
      if (name === undefined) return part.replace(/[.*+?^$()|[\]\\]/g, "\\$&");
      names.push(name);
      return "([^/?#]+)";
    })
    .join("");
  const pathname = new URL(url, "http://page.invalid").pathname;
  const match = new RegExp(`^${pattern}$`).exec(pathname);
  if (!match) throw new Error(`${url} is not a ${template} URL.`);
  return Object.fromEntries(names.map((name, i) => [name, decodeURIComponent(match[i + 1] ?? "")]));
}

/** A list answer's items, whether the endpoint paginates ({results: [...]}) or not ([...]). */
export function listItems<T>(body: readonly T[] | { readonly results?: readonly T[] }): T[] {
  if (Array.isArray(body)) return [...(body as readonly T[])];
  return [...((body as { results?: readonly T[] }).results ?? [])];
}

// --- requests ------------------------------------------------------------------------------

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

async function readJson(response: Response): Promise<unknown> {
  const text = await response.text();
  if (!text) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/**
 * One JSON request to `url`: same-origin credentials, CSRF token on writes. Resolves with the
 * parsed body of a 2xx answer (undefined when empty); rejects with an ApiError otherwise.
 */
export async function requestJson<T>(
  method: string,
  url: string,
  options: { body?: unknown; signal?: AbortSignal; fallback?: (status: number) => string } = {},
): Promise<T> {
  const verb = method.toUpperCase();
  const headers: Record<string, string> = { Accept: "application/json" };
  const init: RequestInit = { method: verb, credentials: "same-origin", headers };
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  if (UNSAFE.has(verb)) {
    const token = csrfToken();
    if (token) headers["X-CSRFToken"] = token;
  }
  if (options.signal) init.signal = options.signal;
  let response: Response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    if (error instanceof DOMException && error.name === "AbortError") throw error;
    const detail = error instanceof Error ? error.message : String(error);
    throw new ApiError(0, `The server could not be reached (${detail}).`);
  }
  const body = await readJson(response);
  if (!response.ok) {
    const fallback = options.fallback ?? defaultFallback;
    throw new ApiError(response.status, serverMessage(body) ?? fallback(response.status), body);
  }
  return body as T;
}

function call(
  method: Method,
  template: string,
  options: CommonOptions & {
    path?: Record<string, ParamValue> | undefined;
    query?: Record<string, ParamValue | boolean | null | undefined> | undefined;
    body?: unknown;
  } = {},
): Promise<unknown> {
  const url = buildUrl(template, options.path, options.query);
  const rest: Parameters<typeof requestJson>[2] = { body: options.body };
  if (options.signal) rest.signal = options.signal;
  if (options.fallback) rest.fallback = options.fallback;
  return requestJson(method, url, rest);
}

/** Typed calls by path template: `api.get("/api/v1/jobs/{id}/", {path: {id}})`. */
export const api = {
  get<P extends PathsWith<"get">>(
    template: P,
    ...[options]: Args<Operation<P, "get">>
  ): Promise<Result<Operation<P, "get">>> {
    return call("get", template, options as never) as Promise<Result<Operation<P, "get">>>;
  },
  post<P extends PathsWith<"post">>(
    template: P,
    ...[options]: Args<Operation<P, "post">>
  ): Promise<Result<Operation<P, "post">>> {
    return call("post", template, options as never) as Promise<Result<Operation<P, "post">>>;
  },
  put<P extends PathsWith<"put">>(
    template: P,
    ...[options]: Args<Operation<P, "put">>
  ): Promise<Result<Operation<P, "put">>> {
    return call("put", template, options as never) as Promise<Result<Operation<P, "put">>>;
  },
  patch<P extends PathsWith<"patch">>(
    template: P,
    ...[options]: Args<Operation<P, "patch">>
  ): Promise<Result<Operation<P, "patch">>> {
    return call("patch", template, options as never) as Promise<Result<Operation<P, "patch">>>;
  },
  delete<P extends PathsWith<"delete">>(
    template: P,
    ...[options]: Args<Operation<P, "delete">>
  ): Promise<Result<Operation<P, "delete">>> {
    return call("delete", template, options as never) as Promise<Result<Operation<P, "delete">>>;
  },
};

// --- uploads with progress -----------------------------------------------------------------

/** Rejection of an upload that was aborted on purpose (not an error to show). */
export class UploadAborted extends Error {
  override name = "UploadAborted";
  constructor() {
    super("Upload cancelled.");
  }
}

export interface Upload<T> {
  /** The parsed 2xx answer; ApiError on failure, UploadAborted after abort(). */
  result: Promise<T>;
  abort(): void;
}

/** Multipart POST of `form` with upload progress (fetch cannot report it; XMLHttpRequest can). */
export function uploadForm<P extends PathsWith<"post">>(
  template: P,
  options: {
    path?: Record<string, ParamValue>;
    form: FormData;
    onProgress?: (loaded: number, total: number) => void;
    fallback?: (status: number) => string;
    /** The message when the connection breaks. */
    networkError?: string;
  },
): Upload<Result<Operation<P, "post">>> {
  const xhr = new XMLHttpRequest();
  const result = new Promise<Result<Operation<P, "post">>>((resolve, reject) => {
    xhr.open("POST", buildUrl(template, options.path));
    const token = csrfToken();
    if (token) xhr.setRequestHeader("X-CSRFToken", token);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) options.onProgress?.(event.loaded, event.total);
    });
    xhr.addEventListener("load", () => {
      let body: unknown = xhr.responseText;
      try {
        body = xhr.responseText ? (JSON.parse(xhr.responseText) as unknown) : undefined;
      } catch {
        /* not JSON: keep the text */
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(body as Result<Operation<P, "post">>);
        return;
      }
      const fallback = options.fallback ?? defaultFallback;
      reject(new ApiError(xhr.status, serverMessage(body) ?? fallback(xhr.status), body));
    });
    xhr.addEventListener("error", () => {
      reject(new ApiError(0, options.networkError ?? "The connection was interrupted."));
    });
    xhr.addEventListener("abort", () => reject(new UploadAborted()));
    xhr.send(options.form);
  });
  return { result, abort: () => xhr.abort() };
}
