export { AIHubClient } from './client.js';
export {
  AIHubError,
  APIConnectionError,
  APIError,
  APITimeoutError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  ConflictError,
  InternalServerError,
  NotFoundError,
  Page,
  PagePromise,
  PayloadTooLargeError,
  PermissionDeniedError,
  QuotaExceededError,
  RateLimitError,
  SSEDecoder,
  ServiceUnavailableError,
  Stream,
  UnprocessableEntityError,
  UpstreamError,
  makeError,
  type ClientOptions,
  type ErrorFields,
  type RequestOptions,
  type ServerSentEvent,
} from './core.js';
export * from './models.js';
export * from './resources.js';
export { VERSION } from './version.js';
export { AIHubClient as default } from './client.js';
