// The HTTP side of the client: requests with retries and timeouts, typed errors, cursor pages
// and server-sent event streams. Only the platform's own fetch, streams and TextDecoder are used.

import { VERSION } from './version.js';

export const DEFAULT_BASE_URL = 'http://localhost:8001/api/v1';
export const DEFAULT_TIMEOUT_MS = 60_000;
export const DEFAULT_MAX_RETRIES = 2;
/** A `retry-after` longer than this is not waited for: the error is thrown with it instead. */
export const MAX_RETRY_DELAY_MS = 60_000;
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);
const RETRIED = new Set([429, 503]);

export interface ClientOptions {
  /** An `aihub-sk-…` key (or the platform-admin token); defaults to `AIHUB_API_KEY`. */
  apiKey?: string;
  /** Defaults to `AIHUB_BASE_URL`, else `http://localhost:8001/api/v1`. */
  baseURL?: string;
  /** Milliseconds until an answer's headers (a whole answer for non-streamed calls). */
  timeout?: number;
  /** Retries of GET, PUT and DELETE answered 429 or 503; POST is never retried. */
  maxRetries?: number;
  defaultHeaders?: Record<string, string>;
  /** Another fetch (a proxy's, a test's). */
  fetch?: typeof fetch;
}

export interface RequestOptions {
  /** Cancels the call, and a stream while it is being read. */
  signal?: AbortSignal;
  timeout?: number;
  maxRetries?: number;
  headers?: Record<string, string>;
  /** `If-Match`: the version read (`"3"`), so a change applies only if nobody changed it since. */
  ifMatch?: string;
}

export interface RequestParts {
  body?: unknown;
  query?: Record<string, string | number | boolean | null | undefined>;
}

export function segment(value: string): string {
  return encodeURIComponent(String(value));
}

function env(name: string): string | undefined {
  const p = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  const value = p?.env?.[name];
  return value ? value : undefined;
}

// -------------------------------------------------------------------------------------------
// Errors

/** Every error this SDK throws. */
export class AIHubError extends Error {
  override name = 'AIHubError';
}

/** The platform could not be reached, or the connection broke before an answer. */
export class APIConnectionError extends AIHubError {
  override name = 'APIConnectionError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** No answer within the timeout. */
export class APITimeoutError extends APIConnectionError {
  override name = 'APITimeoutError';
}

/** The caller's AbortSignal cancelled the call or the stream. */
export class APIUserAbortError extends AIHubError {
  override name = 'APIUserAbortError';
}

export interface ErrorFields {
  status?: number;
  type?: string;
  code?: string;
  param?: string | null;
  requestId?: string;
  headers?: Headers;
  body?: unknown;
}

/** An error answer of the platform, in the OpenAI error shape. */
export class APIError extends AIHubError {
  override name = 'APIError';
  readonly status: number | undefined;
  readonly type: string | undefined;
  readonly code: string | undefined;
  readonly param: string | null | undefined;
  /** The `x-request-id` of the answer: the events' correlation id, to quote to an operator. */
  readonly requestId: string | undefined;
  readonly headers: Headers;
  readonly body: unknown;

  constructor(message: string, fields: ErrorFields = {}) {
    super(message);
    this.status = fields.status;
    this.type = fields.type;
    this.code = fields.code;
    this.param = fields.param;
    this.requestId = fields.requestId;
    this.headers = fields.headers ?? new Headers();
    this.body = fields.body;
  }
}

/** 400: the request is malformed or a field is invalid; `param` names it. */
export class BadRequestError extends APIError {
  override name = 'BadRequestError';
}
/** 401: the key is missing, unknown, disabled, expired or revoked. */
export class AuthenticationError extends APIError {
  override name = 'AuthenticationError';
}
/** 403: the key lacks the permission, or the plan the feature. */
export class PermissionDeniedError extends APIError {
  override name = 'PermissionDeniedError';
}
/** 404: no such resource in the caller's organization (or no such model). */
export class NotFoundError extends APIError {
  override name = 'NotFoundError';
}
/** 409: a version (`If-Match`) or uniqueness conflict. */
export class ConflictError extends APIError {
  override name = 'ConflictError';
}
/** 413: the body is larger than the platform takes. */
export class PayloadTooLargeError extends APIError {
  override name = 'PayloadTooLargeError';
}
/** 422: well-formed but refused. */
export class UnprocessableEntityError extends APIError {
  override name = 'UnprocessableEntityError';
}
/** 429: too many requests, tokens or streams; `retryAfter` says when to try again (seconds). */
export class RateLimitError extends APIError {
  override name = 'RateLimitError';
  get retryAfter(): number | undefined {
    return retryAfterMs(this.headers) === undefined ? undefined : retryAfterMs(this.headers)! / 1000;
  }
}
/** 429 `insufficient_quota`: the plan's monthly tokens are spent. */
export class QuotaExceededError extends RateLimitError {
  override name = 'QuotaExceededError';
}
/** 5xx: the platform failed. */
export class InternalServerError extends APIError {
  override name = 'InternalServerError';
}
/** 502/504: every model provider failed or timed out (`upstream_error`, `upstream_timeout`). */
export class UpstreamError extends InternalServerError {
  override name = 'UpstreamError';
}
/** 503: a dependency is unavailable; retry after `retry-after`. */
export class ServiceUnavailableError extends InternalServerError {
  override name = 'ServiceUnavailableError';
}

type ErrorClass = new (message: string, fields: ErrorFields) => APIError;

const BY_STATUS: Record<number, ErrorClass> = {
  400: BadRequestError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  413: PayloadTooLargeError,
  422: UnprocessableEntityError,
  429: RateLimitError,
  500: InternalServerError,
  502: UpstreamError,
  503: ServiceUnavailableError,
  504: UpstreamError,
};

// Errors inside a stream (its 200 already sent) are told apart by their code.
const BY_CODE: Record<string, ErrorClass> = {
  insufficient_quota: QuotaExceededError,
  rate_limit_exceeded: RateLimitError,
  too_many_streams: RateLimitError,
  upstream_error: UpstreamError,
  upstream_timeout: UpstreamError,
  service_unavailable: ServiceUnavailableError,
  invalid_api_key: AuthenticationError,
  not_found: NotFoundError,
};

/** The error an answer (or a stream's error event, `status` undefined) stands for. */
export function makeError(status: number | undefined, body: unknown, headers?: Headers): APIError {
  const detail =
    body && typeof body === 'object' && 'error' in body && typeof (body as { error: unknown }).error === 'object'
      ? ((body as { error: Record<string, unknown> }).error ?? {})
      : {};
  const code = typeof detail.code === 'string' ? detail.code : undefined;
  let cls: ErrorClass;
  if (status === 429 && code === 'insufficient_quota') cls = QuotaExceededError;
  else if (status !== undefined) cls = BY_STATUS[status] ?? (status >= 500 ? InternalServerError : APIError);
  else cls = (code && BY_CODE[code]) || APIError;
  const message =
    typeof detail.message === 'string' && detail.message
      ? detail.message
      : typeof body === 'string' && body
        ? body
        : `HTTP ${status}`;
  return new cls(message, {
    status,
    type: typeof detail.type === 'string' ? detail.type : undefined,
    code,
    param: (detail.param as string | null | undefined) ?? null,
    requestId: headers?.get('x-request-id') ?? undefined,
    headers,
    body,
  });
}

export function retryAfterMs(headers: Headers): number | undefined {
  const value = headers.get('retry-after');
  if (value === null) return undefined;
  const seconds = Number(value);
  if (!Number.isNaN(seconds)) return Math.max(seconds * 1000, 0);
  const when = Date.parse(value);
  return Number.isNaN(when) ? undefined : Math.max(when - Date.now(), 0);
}

/** 0.5 s, 1 s, 2 s … capped at 8 s, with up to a quarter of jitter taken off. */
export function backoffMs(attempt: number): number {
  const delay = Math.min(500 * 2 ** attempt, 8000);
  return delay * (1 - 0.25 * Math.random());
}

// -------------------------------------------------------------------------------------------
// Server-sent events

export interface ServerSentEvent {
  data: string;
  event?: string;
  id?: string;
}

/**
 * Server-sent events as the WHATWG spec reads them, from bytes cut anywhere: inside a line,
 * between the `\r` and `\n` of a line ending, inside a multi-byte UTF-8 character. Lines are cut
 * on bytes (a UTF-8 character never contains `\r` or `\n`) and decoded whole.
 */
export class SSEDecoder {
  private buffer = new Uint8Array(0);
  private data: string[] = [];
  private event: string | undefined;
  private id: string | undefined;
  private started = false;
  private readonly text = new TextDecoder('utf-8');

  feed(chunk: Uint8Array): ServerSentEvent[] {
    const joined = new Uint8Array(this.buffer.length + chunk.length);
    joined.set(this.buffer);
    joined.set(chunk, this.buffer.length);
    const events: ServerSentEvent[] = [];
    let start = 0;
    for (let i = 0; i < joined.length; i++) {
      const byte = joined[i];
      if (byte !== 0x0a && byte !== 0x0d) continue;
      if (byte === 0x0d && i + 1 === joined.length) break; // its \n may come in the next read
      const event = this.line(joined.subarray(start, i));
      if (event) events.push(event);
      if (byte === 0x0d && joined[i + 1] === 0x0a) i++;
      start = i + 1;
    }
    this.buffer = joined.slice(start);
    return events;
  }

  /** What a last line without its ending completes (the stream ended). */
  end(): ServerSentEvent[] {
    const events: ServerSentEvent[] = [];
    if (this.buffer.length) {
      let rest = this.buffer;
      if (rest[rest.length - 1] === 0x0d) rest = rest.subarray(0, rest.length - 1);
      this.buffer = new Uint8Array(0);
      const event = this.line(rest);
      if (event) events.push(event);
    }
    const last = this.line(new Uint8Array(0));
    if (last) events.push(last);
    return events;
  }

  private line(bytes: Uint8Array): ServerSentEvent | undefined {
    let line = this.text.decode(bytes);
    if (!this.started) {
      this.started = true;
      if (line.startsWith('\ufeff')) line = line.slice(1);
    }
    if (line === '') {
      if (!this.data.length && this.event === undefined) return undefined;
      const event: ServerSentEvent = { data: this.data.join('\n') };
      if (this.event !== undefined) event.event = this.event;
      if (this.id !== undefined) event.id = this.id;
      this.data = [];
      this.event = undefined;
      return event;
    }
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (name === 'data') this.data.push(value);
    else if (name === 'event') this.event = value;
    else if (name === 'id' && !value.includes('\0')) this.id = value;
    return undefined;
  }
}

/**
 * The chunks of a streamed answer, as they arrive: `for await (const chunk of stream)`. Leaving
 * the loop early, `abort()`, or the call's `signal` closes the connection; the platform still
 * bills what the model generated.
 */
export class Stream<T> implements AsyncIterable<T> {
  readonly requestId: string | undefined;
  private consumed = false;

  constructor(
    readonly response: Response,
    private readonly controller: AbortController,
    private readonly userSignal?: AbortSignal,
  ) {
    this.requestId = response.headers.get('x-request-id') ?? undefined;
  }

  /** Closes the connection. */
  abort(): void {
    this.controller.abort();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.consumed) throw new AIHubError('a stream can be read once');
    this.consumed = true;
    const body = this.response.body;
    if (!body) return;
    const reader = body.getReader();
    const decoder = new SSEDecoder();
    let done = false;
    try {
      for (;;) {
        let read: ReadableStreamReadResult<Uint8Array>;
        try {
          read = await reader.read();
        } catch (e) {
          if (this.userSignal?.aborted) throw new APIUserAbortError('the stream was cancelled', { cause: e });
          throw new APIConnectionError(`the stream broke off: ${String(e)}`, { cause: e });
        }
        const events = read.done ? decoder.end() : decoder.feed(read.value);
        for (const event of events) {
          if (event.data === '[DONE]') {
            done = true;
            return;
          }
          const payload = JSON.parse(event.data) as unknown;
          if (payload && typeof payload === 'object' && 'error' in payload) throw makeError(undefined, payload);
          yield payload as T;
        }
        if (read.done) {
          done = true;
          return;
        }
      }
    } finally {
      if (!done) this.controller.abort();
      reader.releaseLock();
    }
  }
}

// -------------------------------------------------------------------------------------------
// Cursor pages

export interface PageBody<T> {
  object?: string;
  data: T[];
  next_cursor?: string | null;
}

/** One page of a list; `for await` over it runs through this page and every one after it. */
export class Page<T> implements AsyncIterable<T> {
  readonly data: T[];
  readonly next_cursor: string | null;

  constructor(
    body: PageBody<T>,
    private readonly fetchPage: (cursor: string) => Promise<Page<T>>,
    readonly requestId?: string,
  ) {
    this.data = body.data ?? [];
    this.next_cursor = body.next_cursor ?? null;
  }

  hasNextPage(): boolean {
    return !!this.next_cursor;
  }

  nextPage(): Promise<Page<T>> {
    if (!this.next_cursor) throw new AIHubError('this is the last page');
    return this.fetchPage(this.next_cursor);
  }

  async *iterPages(): AsyncGenerator<Page<T>> {
    let page: Page<T> = this;
    for (;;) {
      yield page;
      if (!page.hasNextPage()) return;
      page = await page.nextPage();
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for await (const page of this.iterPages()) yield* page.data;
  }
}

/**
 * What a list call returns: a Promise of the first page (`await` it), which is also an async
 * iterable of every item of every page (`for await` over it).
 */
export class PagePromise<T> extends Promise<Page<T>> implements AsyncIterable<T> {
  constructor(load: () => Promise<Page<T>>) {
    super((resolve, reject) => {
      load().then(resolve, reject);
    });
  }

  // `then` and `catch` give plain Promises, not more PagePromises.
  static override get [Symbol.species](): PromiseConstructor {
    return Promise;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    yield* await this;
  }
}

// -------------------------------------------------------------------------------------------
// Transport

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new APIUserAbortError('the call was cancelled'));
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new APIUserAbortError('the call was cancelled'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

async function readBody(response: Response): Promise<unknown> {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export class Transport {
  readonly baseURL: string;
  readonly maxRetries: number;
  private readonly apiKey: string;
  private readonly timeout: number;
  private readonly defaultHeaders: Record<string, string>;
  private readonly fetchImpl: typeof fetch;

  constructor(options: ClientOptions = {}) {
    const apiKey = options.apiKey ?? env('AIHUB_API_KEY');
    if (!apiKey) {
      throw new AIHubError(
        'No API key: pass { apiKey } or set AIHUB_API_KEY (an `aihub-sk-…` key, or the platform-admin token).',
      );
    }
    this.apiKey = apiKey;
    this.baseURL = (options.baseURL ?? env('AIHUB_BASE_URL') ?? DEFAULT_BASE_URL).replace(/\/+$/, '');
    this.timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
    this.maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
    this.defaultHeaders = options.defaultHeaders ?? {};
    const f = options.fetch ?? globalThis.fetch;
    if (!f) throw new AIHubError('No fetch: Node 18 or later, or pass { fetch }.');
    this.fetchImpl = f;
  }

  private url(path: string, query?: RequestParts['query']): string {
    const url = new URL(this.baseURL + path);
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(name, String(value));
    }
    return url.toString();
  }

  /** Sends with retries; the returned response is a success (2xx or 3xx), its body unread. */
  private async send(
    method: string,
    path: string,
    parts: RequestParts,
    options: RequestOptions,
    accept: string,
  ): Promise<{ response: Response; controller: AbortController; clear: () => void }> {
    const headers: Record<string, string> = {
      Authorization: `Bearer ${this.apiKey}`,
      Accept: accept,
      'User-Agent': `ai-hub-javascript/${VERSION}`,
      ...this.defaultHeaders,
      ...(options.headers ?? {}),
    };
    if (options.ifMatch !== undefined) headers['If-Match'] = options.ifMatch;
    let body: string | undefined;
    if (parts.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(parts.body);
    }
    const url = this.url(path, parts.query);
    const maxRetries = options.maxRetries ?? this.maxRetries;
    const timeout = options.timeout ?? this.timeout;
    for (let attempt = 0; ; attempt++) {
      const controller = new AbortController();
      const userSignal = options.signal;
      if (userSignal?.aborted) throw new APIUserAbortError('the call was cancelled');
      const onAbort = () => controller.abort(userSignal?.reason);
      userSignal?.addEventListener('abort', onAbort, { once: true });
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, timeout);
      const clear = () => clearTimeout(timer);
      let response: Response;
      try {
        response = await this.fetchImpl(url, { method, headers, body, signal: controller.signal, redirect: 'manual' });
      } catch (e) {
        clear();
        userSignal?.removeEventListener('abort', onAbort);
        if (timedOut) throw new APITimeoutError(`${method} ${path}: no answer in ${timeout} ms`, { cause: e });
        if (userSignal?.aborted) throw new APIUserAbortError('the call was cancelled');
        throw new APIConnectionError(`${method} ${path}: ${String(e)}`, { cause: e });
      }
      if (response.ok || (response.status >= 300 && response.status < 400)) {
        return { response, controller, clear };
      }
      let errorBody: unknown;
      try {
        errorBody = await readBody(response);
      } finally {
        clear();
        userSignal?.removeEventListener('abort', onAbort);
      }
      const delay = this.retryDelay(method, response, errorBody, attempt, maxRetries);
      if (delay === undefined) throw makeError(response.status, errorBody, response.headers);
      await sleep(delay, userSignal);
    }
  }

  private retryDelay(
    method: string,
    response: Response,
    body: unknown,
    attempt: number,
    maxRetries: number,
  ): number | undefined {
    if (attempt >= maxRetries || !IDEMPOTENT.has(method) || !RETRIED.has(response.status)) return undefined;
    const code = (body as { error?: { code?: string } } | undefined)?.error?.code;
    if (code === 'insufficient_quota') return undefined; // the month's tokens do not come back by waiting
    const told = retryAfterMs(response.headers);
    if (told !== undefined) return told <= MAX_RETRY_DELAY_MS ? told : undefined;
    return backoffMs(attempt);
  }

  async request<T>(method: string, path: string, parts: RequestParts, options: RequestOptions = {}): Promise<T> {
    const { response, clear } = await this.send(method, path, parts, options, 'application/json');
    try {
      if (response.status === 204) return undefined as T;
      const text = await response.text();
      if (!text) return undefined as T;
      const value = JSON.parse(text) as T;
      const requestId = response.headers.get('x-request-id');
      if (value && typeof value === 'object' && requestId) {
        Object.defineProperty(value, '_requestId', { value: requestId, enumerable: false });
      }
      return value;
    } catch (e) {
      if (e instanceof SyntaxError) throw new APIError(`${method} ${path}: the answer is not JSON`, { status: response.status });
      if (options.signal?.aborted) throw new APIUserAbortError('the call was cancelled');
      throw new APIConnectionError(`${method} ${path}: ${String(e)}`, { cause: e });
    } finally {
      clear();
    }
  }

  page<T>(path: string, parts: RequestParts, options: RequestOptions = {}): PagePromise<T> {
    const load = async (cursor?: string): Promise<Page<T>> => {
      const query = { ...(parts.query ?? {}) };
      if (cursor) query.cursor = cursor;
      const body = await this.request<PageBody<T>>('GET', path, { query }, options);
      return new Page<T>(body, (next) => load(next), (body as { _requestId?: string })._requestId);
    };
    return new PagePromise<T>(() => load());
  }

  async stream<T>(method: string, path: string, parts: RequestParts, options: RequestOptions = {}): Promise<Stream<T>> {
    const { response, controller, clear } = await this.send(method, path, parts, options, 'text/event-stream');
    clear(); // the timeout bounds the wait for the answer, not the stream's length
    return new Stream<T>(response, controller, options.signal);
  }

  async download(
    method: string,
    path: string,
    parts: RequestParts,
    options: RequestOptions = {},
  ): Promise<ReadableStream<Uint8Array>> {
    const { response, clear } = await this.send(method, path, parts, options, '*/*');
    clear();
    if (!response.body) return new ReadableStream<Uint8Array>({ start: (c) => c.close() });
    return response.body;
  }

  async downloadToFile(
    file: string,
    method: string,
    path: string,
    parts: RequestParts,
    options: RequestOptions = {},
  ): Promise<number> {
    const body = await this.download(method, path, parts, options);
    // Node's file system, loaded only here so the SDK still runs where there is none.
    const fsModule = 'node:fs/promises';
    const fs = (await import(fsModule)) as {
      open(path: string, flags: string): Promise<{ write(data: Uint8Array): Promise<unknown>; close(): Promise<void> }>;
    };
    const handle = await fs.open(file, 'w');
    let written = 0;
    const reader = body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        await handle.write(value);
        written += value.length;
      }
    } catch (e) {
      if (e instanceof AIHubError) throw e;
      throw new APIConnectionError(`the download broke off: ${String(e)}`, { cause: e });
    } finally {
      reader.releaseLock();
      await handle.close();
    }
    return written;
  }
}
