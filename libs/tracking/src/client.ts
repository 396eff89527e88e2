/**
 * A small typed client for the MLflow tracking server's REST API (`/api/2.0/mlflow/...`) and its
 * artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/...`), over Node's fetch. One method per
 * endpoint; no retries here (the delivery queue decides what to retry). Errors are
 * {@link MlflowApiError} (the server answered) or {@link MlflowUnreachableError} (it did not), and
 * their messages never contain credentials.
 *
 * @example
 *   const client = new MlflowClient({ trackingUri: 'http://127.0.0.1:5000' });
 *   const exp = await client.getOrCreateExperiment('urisc');
 *   const run = await client.createRun({ experimentId: exp.experimentId, runName: 'unet-r50' });
 *   await client.logBatch(run.info.runId, { metrics: [{ key: 'loss', value: 0.3, timestamp: Date.now(), step: 1 }] });
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { withTemporaryFile } from '@emseg/fs';
import { MlflowApiError, MlflowUnreachableError, NotMlflowServerError, TrackingInputError } from './errors.js';
import { decodeArtifactFile, decodeExperiment, decodeMetric, decodeRun, decodeRunInfo, encodeDatasetInput, encodeJson } from './json-codec.js';
import { SecretRedactor } from './secrets.js';
import { parseTrackingUri, type Credentials } from './settings.js';
import type { ArtifactFile, DatasetInput, EndStatus, Experiment, MetricPoint, Run, RunInfo } from './types.js';

export interface MlflowClientOptions extends Credentials {
  /** `http://127.0.0.1:5000`; userinfo in the URI is used for basic auth and then dropped. */
  trackingUri: string;
  /** Per-request timeout for REST calls (artifact transfers get `artifactTimeoutMs`). Default 30 s. */
  requestTimeoutMs?: number;
  /** Timeout for one artifact upload or download. Default 10 min. */
  artifactTimeoutMs?: number;
}

export interface CreateRunRequest {
  experimentId: string;
  runName?: string;
  /** Milliseconds since the epoch; defaults to now. */
  startTime?: number;
  tags?: Record<string, string>;
}

export interface LogBatchRequest {
  metrics?: MetricPoint[];
  params?: Record<string, string> | Array<{ key: string; value: string }>;
  tags?: Record<string, string> | Array<{ key: string; value: string }>;
}

export interface SearchRunsRequest {
  experimentIds: string[];
  /** MLflow filter syntax, e.g. `tags."emseg.kind" = 'encoder' and metrics.loss < 1`. */
  filter?: string;
  /** e.g. `['metrics.loss ASC', 'attributes.start_time DESC']`. */
  orderBy?: string[];
  /** Maximum number of runs to return over all pages (default 1000). */
  maxResults?: number;
  runViewType?: 'ACTIVE_ONLY' | 'DELETED_ONLY' | 'ALL';
}

/** Body for an artifact upload: bytes in memory, or a file (by path or open descriptor) of known size. */
export type ArtifactBody = Uint8Array | { path: string; fd?: number; size: number };

type Json = Record<string, unknown>;
type Query = Record<string, string | number | string[] | undefined>;

const API = '/api/2.0/mlflow';
const ARTIFACTS_API = '/api/2.0/mlflow-artifacts/artifacts';

export class MlflowClient {
  /** The server's base URL without credentials: safe to print and store. */
  readonly trackingUri: string;
  /** Redacts this client's credentials from any text. */
  readonly redactor: SecretRedactor;
  private readonly authorization: string | undefined;
  private readonly requestTimeoutMs: number;
  private readonly artifactTimeoutMs: number;

  constructor(options: MlflowClientOptions) {
    const address = parseTrackingUri(options.trackingUri);
    this.trackingUri = address.baseUrl;
    const username = options.username ?? address.username;
    const password = options.password ?? address.password;
    if (options.token) this.authorization = `Bearer ${options.token}`;
    else if (username !== undefined || password !== undefined) {
      this.authorization = `Basic ${Buffer.from(`${username ?? ''}:${password ?? ''}`).toString('base64')}`;
    }
    this.redactor = new SecretRedactor([options.token, password, address.password, this.authorization?.split(' ')[1]]);
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    this.artifactTimeoutMs = options.artifactTimeoutMs ?? 600_000;
  }

  // ---------------------------------------------------------------- server

  /** True when GET /health answers 200 within `timeoutMs`. Never throws. */
  async health(timeoutMs = 2000): Promise<boolean> {
    try {
      const res = await fetch(`${this.trackingUri}/health`, { signal: AbortSignal.timeout(timeoutMs) });
      await res.arrayBuffer();
      return res.ok;
    } catch {
      return false;
    }
  }

  // ---------------------------------------------------------------- experiments

  /** The experiment with this name, or undefined when there is none. */
  async getExperimentByName(name: string): Promise<Experiment | undefined> {
    try {
      const res = await this.call('GET', 'experiments/get-by-name', { experiment_name: name });
      return decodeExperiment(res.experiment as Json);
    } catch (err) {
      if (err instanceof MlflowApiError && err.errorCode === 'RESOURCE_DOES_NOT_EXIST') return undefined;
      throw err;
    }
  }

  async getExperiment(experimentId: string): Promise<Experiment> {
    const res = await this.call('GET', 'experiments/get', { experiment_id: experimentId });
    return decodeExperiment(res.experiment as Json);
  }

  /** Creates an experiment and returns its id. */
  async createExperiment(name: string, tags: Record<string, string> = {}): Promise<string> {
    const res = await this.call('POST', 'experiments/create', { name, tags: toKeyValues(tags) });
    return String(res.experiment_id);
  }

  /** Sets (or overwrites) a tag of an experiment. */
  async setExperimentTag(experimentId: string, key: string, value: string): Promise<void> {
    await this.call('POST', 'experiments/set-experiment-tag', { experiment_id: experimentId, key, value });
  }

  /**
   * Gets the experiment by name, creating it if needed (safe against a concurrent creator).
   * `tags` are given to an experiment created now.
   */
  async getOrCreateExperiment(name: string, tags: Record<string, string> = {}): Promise<Experiment> {
    const existing = await this.getExperimentByName(name);
    if (existing) {
      if (existing.lifecycleStage === 'deleted') {
        throw new TrackingInputError(
          'experiment name',
          name,
          `experiment ${existing.experimentId} with this name is deleted; restore it in the MLflow UI or choose another name`,
        );
      }
      return existing;
    }
    try {
      return await this.getExperiment(await this.createExperiment(name, tags));
    } catch (err) {
      if (err instanceof MlflowApiError && err.errorCode === 'RESOURCE_ALREADY_EXISTS') {
        const raced = await this.getExperimentByName(name);
        if (raced) return raced;
      }
      throw err;
    }
  }

  // ---------------------------------------------------------------- runs

  async createRun(request: CreateRunRequest): Promise<Run> {
    const body: Json = {
      experiment_id: request.experimentId,
      start_time: request.startTime ?? Date.now(),
      tags: toKeyValues(request.tags ?? {}),
    };
    if (request.runName !== undefined) body.run_name = request.runName;
    const userTag = request.tags?.['mlflow.user'];
    if (userTag !== undefined) body.user_id = userTag;
    const res = await this.call('POST', 'runs/create', body);
    return decodeRun(res.run as Json);
  }

  async getRun(runId: string): Promise<Run> {
    const res = await this.call('GET', 'runs/get', { run_id: runId });
    return decodeRun(res.run as Json);
  }

  /** Sets a run's status (and end time when it ends). Idempotent. */
  async updateRun(runId: string, update: { status?: EndStatus | 'RUNNING'; endTime?: number; runName?: string }): Promise<RunInfo> {
    const body: Json = { run_id: runId };
    if (update.status !== undefined) body.status = update.status;
    if (update.endTime !== undefined) body.end_time = update.endTime;
    if (update.runName !== undefined) body.run_name = update.runName;
    const res = await this.call('POST', 'runs/update', body);
    return decodeRunInfo(res.run_info as Json);
  }

  /**
   * One runs/log-batch call. The caller respects the limits (at most 1000 metrics, 100 params,
   * 100 tags, 1000 entities, 1 MB): see `planBatch`. Exact duplicate metric points are stored once.
   */
  async logBatch(runId: string, batch: LogBatchRequest): Promise<void> {
    await this.call('POST', 'runs/log-batch', {
      run_id: runId,
      metrics: batch.metrics ?? [],
      params: toKeyValues(batch.params ?? []),
      tags: toKeyValues(batch.tags ?? []),
    });
  }

  async setTag(runId: string, key: string, value: string): Promise<void> {
    await this.call('POST', 'runs/set-tag', { run_id: runId, key, value });
  }

  /** runs/log-inputs: datasets (name, digest, source) the run used. Logging the same dataset again is a no-op. */
  async logInputs(runId: string, datasets: DatasetInput[]): Promise<void> {
    await this.call('POST', 'runs/log-inputs', { run_id: runId, datasets: datasets.map(encodeDatasetInput) });
  }

  /** Runs matching a filter, following page tokens up to `maxResults` (default 1000). */
  async searchRuns(request: SearchRunsRequest): Promise<Run[]> {
    const limit = request.maxResults ?? 1000;
    const runs: Run[] = [];
    let pageToken: string | undefined;
    do {
      const body: Json = {
        experiment_ids: request.experimentIds,
        max_results: Math.min(1000, limit - runs.length),
        run_view_type: request.runViewType ?? 'ACTIVE_ONLY',
      };
      if (request.filter) body.filter = request.filter;
      if (request.orderBy) body.order_by = request.orderBy;
      if (pageToken) body.page_token = pageToken;
      const res = await this.call('POST', 'runs/search', body);
      if (Array.isArray(res.runs)) runs.push(...(res.runs as Json[]).map(decodeRun));
      pageToken = typeof res.next_page_token === 'string' && res.next_page_token ? res.next_page_token : undefined;
    } while (pageToken && runs.length < limit);
    return runs;
  }

  /** Every point of one metric, in the server's order (by step, then timestamp), following pages. */
  async getMetricHistory(runId: string, key: string): Promise<MetricPoint[]> {
    const points: MetricPoint[] = [];
    let pageToken: string | undefined;
    do {
      const res = await this.call('GET', 'metrics/get-history', {
        run_id: runId,
        metric_key: key,
        max_results: 25_000,
        page_token: pageToken,
      });
      if (Array.isArray(res.metrics)) points.push(...(res.metrics as Json[]).map(decodeMetric));
      pageToken = typeof res.next_page_token === 'string' && res.next_page_token ? res.next_page_token : undefined;
    } while (pageToken);
    return points;
  }

  // ---------------------------------------------------------------- artifacts

  /** Direct children of `path` (relative to the run's artifact root; '' for the root). */
  async listArtifacts(runId: string, path = ''): Promise<ArtifactFile[]> {
    const files: ArtifactFile[] = [];
    let pageToken: string | undefined;
    do {
      const res = await this.call('GET', 'artifacts/list', { run_id: runId, path: path || undefined, page_token: pageToken });
      if (Array.isArray(res.files)) files.push(...(res.files as Json[]).map(decodeArtifactFile));
      pageToken = typeof res.next_page_token === 'string' && res.next_page_token ? res.next_page_token : undefined;
    } while (pageToken);
    return files;
  }

  /** PUT one file through the artifact proxy to `<run artifact root>/<artifactPath>`. Overwrites (idempotent). */
  async uploadArtifact(artifactUri: string, artifactPath: string, body: ArtifactBody): Promise<void> {
    const endpoint = `PUT mlflow-artifacts/${artifactPath}`;
    const url = this.artifactUrl(artifactUri, artifactPath);
    // A function, so a retry on a fresh connection gets a fresh stream of the file.
    const init = (): RequestInit & { duplex?: 'half' } => {
      const headers = this.headers({ 'content-type': 'application/octet-stream' });
      if (body instanceof Uint8Array) return { method: 'PUT', headers, body };
      const stream = body.fd !== undefined ? createReadStream('', { fd: body.fd, start: 0, autoClose: false }) : createReadStream(body.path);
      headers['content-length'] = String(body.size);
      return { method: 'PUT', headers, body: Readable.toWeb(stream) as unknown as ReadableStream<Uint8Array>, duplex: 'half' };
    };
    const res = await this.send(url, init, endpoint, this.artifactTimeoutMs);
    await this.check(res, endpoint);
  }

  /** GET one file through the artifact proxy into `destFile` (written to a temp file, then renamed). */
  async downloadArtifact(artifactUri: string, artifactPath: string, destFile: string): Promise<void> {
    const endpoint = `GET mlflow-artifacts/${artifactPath}`;
    const res = await this.send(this.artifactUrl(artifactUri, artifactPath), () => ({ headers: this.headers() }), endpoint, this.artifactTimeoutMs);
    if (!res.ok) await this.check(res, endpoint);
    await withTemporaryFile(destFile, (tmp) => pipeline(res.body ? Readable.fromWeb(res.body as never) : Readable.from([]), createWriteStream(tmp)));
  }

  /** The proxy URL of `artifactPath` under a run's `mlflow-artifacts:` root. */
  private artifactUrl(artifactUri: string, artifactPath: string): string {
    const root = artifactProxyRoot(artifactUri);
    const encoded = [...root.split('/'), ...artifactPath.split('/')]
      .filter((p) => p !== '')
      .map(encodeURIComponent)
      .join('/');
    return `${this.trackingUri}${ARTIFACTS_API}/${encoded}`;
  }

  // ---------------------------------------------------------------- transport

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    const headers: Record<string, string> = { ...extra };
    if (this.authorization) headers.authorization = this.authorization;
    return headers;
  }

  private async call(method: 'GET' | 'POST', endpoint: string, payload: Json | Query): Promise<Json> {
    const url = new URL(`${this.trackingUri}${API}/${endpoint}`);
    const init: RequestInit = { method };
    if (method === 'GET') {
      for (const [key, value] of Object.entries(payload as Query)) {
        if (value === undefined) continue;
        for (const v of Array.isArray(value) ? value : [value]) url.searchParams.append(key, String(v));
      }
      init.headers = this.headers();
    } else {
      init.body = encodeJson(payload);
      init.headers = this.headers({ 'content-type': 'application/json' });
    }
    const label = `${method} ${endpoint}`;
    // runs/create is the one call that is not idempotent: never sent twice.
    const res = await this.send(url.toString(), () => init, label, this.requestTimeoutMs, endpoint !== 'runs/create');
    const text = await this.check(res, label);
    if (text === '') return {};
    try {
      return JSON.parse(text) as Json;
    } catch {
      throw this.notMlflow(res, text, label);
    }
  }

  /**
   * One HTTP request. Idle keep-alive connections go stale while a training step blocks the event
   * loop: the server (uvicorn: after 5 s idle) closes them, and a request sent before Node has read
   * that close fails with "UND_ERR_SOCKET: other side closed" although the server is fine. So
   * pending socket events are processed first (two turns of the loop: the close is read, then the
   * connection leaves the pool), and an idempotent request that still meets a closed connection
   * is sent once more, on a fresh one.
   */
  private async send(url: string, init: () => RequestInit, label: string, timeoutMs: number, idempotent = true): Promise<Response> {
    for (let attempt = 1; ; attempt++) {
      await settleSocketEvents();
      try {
        return await fetch(url, { ...init(), signal: AbortSignal.timeout(timeoutMs) });
      } catch (err) {
        if (!(idempotent && attempt === 1 && isClosedConnection(err))) {
          throw new MlflowUnreachableError(this.trackingUri, label, this.redactor.redact(describeFetchError(err, timeoutMs)));
        }
      }
    }
  }

  /** An answer that is not MLflow's JSON (a web page, a proxy): an error that says so, without the page. */
  private notMlflow(res: Response, text: string, label: string): NotMlflowServerError {
    const type = res.headers.get('content-type') ?? 'no content type';
    const html = /html/i.test(type) || /^\s*</.test(text);
    const answer = html ? `an HTML page (${type})` : `a body that is not JSON (${type}): ${JSON.stringify(this.redactor.redact(text.trim().slice(0, 120)))}`;
    return new NotMlflowServerError(label, res.status, answer, this.trackingUri);
  }

  /** Reads the body; throws MlflowApiError for non-2xx answers. Returns the body text. */
  private async check(res: Response, label: string): Promise<string> {
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      throw new MlflowUnreachableError(this.trackingUri, label, this.redactor.redact(describeFetchError(err, 0)));
    }
    if (res.ok) return text;
    if (!/json/i.test(res.headers.get('content-type') ?? '') && /^\s*</.test(text)) throw this.notMlflow(res, text, label);
    let code: string | undefined;
    let message = text.trim();
    try {
      const parsed = JSON.parse(text) as Json;
      if (typeof parsed.error_code === 'string') code = parsed.error_code;
      if (typeof parsed.message === 'string') message = parsed.message;
      else if (typeof parsed.detail === 'string') message = parsed.detail;
    } catch {
      // Plain-text answer (auth, proxies): keep it as the message.
    }
    if (message.length > 600) message = `${message.slice(0, 600)}...`;
    throw new MlflowApiError(label, res.status, code, this.redactor.redact(message || res.statusText), this.trackingUri);
  }
}

/**
 * The proxy path of a run's artifact root: `mlflow-artifacts:/1/<run>/artifacts` and
 * `mlflow-artifacts://host:port/1/<run>/artifacts` both give `1/<run>/artifacts`.
 */
export function artifactProxyRoot(artifactUri: string): string {
  const match = /^mlflow-artifacts:(?:\/\/[^/]*)?\/?(.*)$/.exec(artifactUri);
  if (!match) {
    throw new TrackingInputError(
      'run artifact URI',
      artifactUri,
      "expected an 'mlflow-artifacts:/' root: start the server with artifact serving on (the default of `mlflow server`, used by `npm run mlflow`) so artifacts go through its proxy",
    );
  }
  return match[1].replace(/\/+$/, '');
}

function toKeyValues(entries: Record<string, string> | Array<{ key: string; value: string }>): Array<{ key: string; value: string }> {
  return Array.isArray(entries) ? entries : Object.entries(entries).map(([key, value]) => ({ key, value }));
}

/** Two turns of the event loop: socket closes read in one turn are acted on in the next. */
async function settleSocketEvents(): Promise<void> {
  for (let i = 0; i < 2; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** The connection was closed under the request (a stale keep-alive socket), as opposed to no server. */
function isClosedConnection(err: unknown): boolean {
  const code = (err as { cause?: { code?: unknown } } | undefined)?.cause?.code;
  return code === 'UND_ERR_SOCKET' || code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_CLOSED';
}

function describeFetchError(err: unknown, timeoutMs: number): string {
  if (err instanceof Error) {
    if (err.name === 'TimeoutError' || err.name === 'AbortError') return `no answer within ${timeoutMs} ms`;
    const cause = (err as { cause?: unknown }).cause;
    if (cause instanceof Error) {
      const code = (cause as { code?: string }).code;
      return code ? `${code}: ${cause.message}` : cause.message;
    }
    return err.message;
  }
  return String(err);
}
