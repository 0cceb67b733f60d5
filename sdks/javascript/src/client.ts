import { Transport, type ClientOptions } from './core.js';
import { Resources } from './resources.js';

/**
 * A client of the AI Hub API. `apiKey` defaults to `AIHUB_API_KEY`, `baseURL` to
 * `AIHUB_BASE_URL`, else `http://localhost:8001/api/v1`. GET, PUT and DELETE answered 429 or 503
 * are tried again (after the `retry-after` the platform gave, or a backoff) up to `maxRetries`
 * times; POST never is, since a chat call or a creation could happen twice.
 */
export class AIHubClient extends Resources {
  readonly baseURL: string;

  constructor(options: ClientOptions = {}) {
    const transport = new Transport(options);
    super(transport);
    this.baseURL = transport.baseURL;
  }
}
