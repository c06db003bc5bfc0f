/**
 * The slice of the egress client the connection code uses. Everything that leaves the process
 * goes through `src/egress` (which implements this); naming the port here keeps this module's
 * tests and its dependency direction plain.
 */
import type { Readable } from 'node:stream';

export interface OutboundRequest {
  readonly method: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Buffer;
  readonly maxResponseBytes?: number;
  readonly signal?: AbortSignal;
}

export interface OutboundResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Buffer;
}

export interface StreamRequest {
  readonly method: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: Readable | Buffer | string | null;
  readonly maxResponseBytes?: number;
  readonly signal?: AbortSignal;
}

export interface StreamResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Readable;
}

export interface OutboundHttp {
  request(url: string, init: OutboundRequest): Promise<OutboundResponse>;
  stream(url: string, init: StreamRequest): Promise<StreamResponse>;
}
