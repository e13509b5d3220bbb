// Test doubles for the browser's network: a scripted fetch and XMLHttpRequest that record what
// the code under test sent.
import { vi } from "vitest";

export interface SentRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: unknown;
}

type Reply = { status: number; body?: unknown; text?: string };

/** Stubs fetch: each call takes the next reply (or `route(request)`) and is recorded. */
export function scriptFetch(replies: Reply[] | ((request: SentRequest) => Reply)): SentRequest[] {
  const sent: SentRequest[] = [];
  const queue = Array.isArray(replies) ? [...replies] : null;
  vi.stubGlobal(
    "fetch",
    vi.fn(async (url: string, init: RequestInit = {}) => {
      const request: SentRequest = {
        method: init.method ?? "GET",
        url,
        headers: { ...(init.headers as Record<string, string>) },
        body: typeof init.body === "string" ? JSON.parse(init.body) : init.body,
      };
      sent.push(request);
      const reply = queue ? queue.shift() : (replies as (r: SentRequest) => Reply)(request);
      if (!reply) throw new Error(`unexpected request ${request.method} ${url}`);
      const text = reply.text ?? (reply.body === undefined ? "" : JSON.stringify(reply.body));
      return new Response(reply.status === 204 ? null : text, { status: reply.status });
    }),
  );
  return sent;
}

type Listener = (event: { lengthComputable?: boolean; loaded?: number; total?: number }) => void;

/** A scripted XMLHttpRequest; the test drives it through `FakeXhr.last`. */
export class FakeXhr {
  static last: FakeXhr | undefined;
  method = "";
  url = "";
  headers: Record<string, string> = {};
  body: unknown = undefined;
  status = 0;
  responseText = "";
  aborted = false;
  private listeners: Record<string, Listener[]> = {};
  private uploadListeners: Listener[] = [];
  upload = {
    addEventListener: (_type: string, listener: Listener) => this.uploadListeners.push(listener),
  };

  constructor() {
    FakeXhr.last = this;
  }
  open(method: string, url: string): void {
    this.method = method;
    this.url = url;
  }
  setRequestHeader(name: string, value: string): void {
    this.headers[name] = value;
  }
  addEventListener(type: string, listener: Listener): void {
    (this.listeners[type] ??= []).push(listener);
  }
  send(body: unknown): void {
    this.body = body;
  }
  abort(): void {
    this.aborted = true;
    this.emit("abort");
  }
  progress(loaded: number, total: number): void {
    for (const listener of this.uploadListeners)
      listener({ lengthComputable: true, loaded, total });
  }
  respond(status: number, body: unknown): void {
    this.status = status;
    this.responseText = typeof body === "string" ? body : JSON.stringify(body);
    this.emit("load");
  }
  fail(): void {
    this.emit("error");
  }
  private emit(type: string): void {
    for (const listener of this.listeners[type] ?? []) listener({});
  }
}

export function stubXhr(): void {
  FakeXhr.last = undefined;
  vi.stubGlobal("XMLHttpRequest", FakeXhr);
}

/** Lets pending promise callbacks run. */
export async function flush(times = 5): Promise<void> {
  for (let i = 0; i < times; i += 1) await Promise.resolve();
}
