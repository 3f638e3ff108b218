/**
 * @module log/metrics-http
 * SUMMARY: the Prometheus scrape endpoint (metrics_port, one listener per inet_interfaces
 * address): GET or HEAD /metrics answers the text exposition format with the registry's
 * Content-Type; any other path is 404, any other method on /metrics 405. MetricsListener has
 * listen(), port(), close(), like the other listeners.
 * DIAGNOSTICS: a malformed request gets "400 Bad Request" and its connection closed; a
 * failed render is a 500 and one logged error. Nothing a client sends can throw out of here.
 * SEE ALSO: log/metrics.ts, Prometheus "Exposition formats", RFC 9110 section 15.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { boundPort, listenOn } from '../util/listen.js';

export interface MetricsListenerSpec {
  readonly host: string;
  readonly port: number;
}

/** What the endpoint serves (Metrics). */
export interface MetricsSource {
  readonly contentType: string;
  render(): Promise<string>;
}

/** A scrape is small and quick: a client that dawdles is holding a socket for nothing. */
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 30_000;
const PATH = '/metrics';

export class MetricsListener {
  readonly spec: MetricsListenerSpec;
  private readonly server: Server;
  private readonly onError: (msg: string) => void;

  constructor(spec: MetricsListenerSpec, source: MetricsSource, onError: (msg: string) => void = () => undefined) {
    this.spec = spec;
    this.server = createServer({ headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS }, (req, res) => {
      answer(req, res, source, onError);
    });
    this.server.keepAliveTimeout = 5_000;
    this.server.on('clientError', (_err: Error, socket: Socket) => {
      if (socket.writable && !socket.writableEnded) socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
    this.onError = onError;
  }

  async listen(): Promise<void> {
    await listenOn(this.server, this.spec.port, this.spec.host);
    // Only now: a failure to listen is the caller's error, reported once by it.
    this.server.on('error', (err) => this.onError(`metrics: ${err.message}`));
  }

  /** The bound port (port 0 in tests). */
  port(): number {
    return boundPort(this.server, this.spec.port);
  }

  /** Stop at once: a scrape in progress loses nothing that matters. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

function answer(req: IncomingMessage, res: ServerResponse, source: MetricsSource, onError: (msg: string) => void): void {
  const url = req.url ?? '';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  if (path !== PATH) return plain(res, 404, 'Not Found');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    return plain(res, 405, 'Method Not Allowed');
  }
  source.render().then(
    (body) => {
      // For HEAD, node sends the headers (Content-Length included) and drops the body.
      res.writeHead(200, { 'Content-Type': source.contentType, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
      res.end(body);
    },
    (err: unknown) => {
      onError(`metrics: cannot render the metrics: ${err instanceof Error ? err.message : String(err)}`);
      if (!res.headersSent) plain(res, 500, 'Internal Server Error');
      else res.destroy();
    },
  );
}

function plain(res: ServerResponse, status: number, text: string): void {
  const body = `${text}\n`;
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}
