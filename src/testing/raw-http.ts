/**
 * HTTP/1.1 by hand over a real socket, for tests where what the client sends (a body that never
 * ends, headers that never finish) or whether the server closes the connection is the point —
 * things `inject` and ordinary clients hide.
 */
import { connect, type Socket } from 'node:net';

export interface RawResponse {
  readonly status: number;
  /** Lower-case names; the last value wins. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

export interface RawConnection {
  readonly socket: Socket;
  write(data: string | Buffer): void;
  /** The next complete response (with a Content-Length or chunked); rejects after `timeoutMs` or if the connection closes first. */
  response(timeoutMs?: number): Promise<RawResponse>;
  /** Resolves (with the time it happened) once the server has closed the connection. */
  readonly closed: Promise<number>;
  readonly isClosed: boolean;
  /** Everything received so far. */
  received(): string;
  destroy(): void;
}

function parse(bytes: Buffer): { response: RawResponse; length: number } | undefined {
  const end = bytes.indexOf('\r\n\r\n');
  if (end === -1) return undefined;
  const [statusLine = '', ...lines] = bytes.subarray(0, end).toString('latin1').split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const bodyStart = end + 4;
  const status = Number(statusLine.split(' ')[1]);
  if (headers['transfer-encoding'] === 'chunked') {
    const parts: Buffer[] = [];
    for (let at = bodyStart; ; ) {
      const lineEnd = bytes.indexOf('\r\n', at);
      if (lineEnd === -1) return undefined;
      const size = Number.parseInt(bytes.subarray(at, lineEnd).toString('latin1'), 16);
      if (bytes.length < lineEnd + 2 + size + 2) return undefined;
      if (size === 0) return { response: { status, headers, body: Buffer.concat(parts).toString('utf8') }, length: lineEnd + 4 };
      parts.push(bytes.subarray(lineEnd + 2, lineEnd + 2 + size));
      at = lineEnd + 2 + size + 2;
    }
  }
  const length = Number(headers['content-length'] ?? 'NaN');
  if (!Number.isInteger(length)) throw new Error(`response without a Content-Length or chunks: ${bytes.subarray(0, end).toString('latin1')}`);
  if (bytes.length - bodyStart < length) return undefined;
  return { response: { status, headers, body: bytes.subarray(bodyStart, bodyStart + length).toString('utf8') }, length: bodyStart + length };
}

export async function rawConnection(port: number, host = '127.0.0.1'): Promise<RawConnection> {
  const socket = connect({ port, host });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let bytes = Buffer.alloc(0);
  let consumed = 0;
  let isClosed = false;
  const listeners = new Set<() => void>();
  socket.on('data', (chunk: Buffer) => {
    bytes = Buffer.concat([bytes, chunk]);
    for (const listener of listeners) listener();
  });
  // A reset from the server is one more way of closing; the tests look at whether and when.
  socket.on('error', () => undefined);
  const closed = new Promise<number>((resolve) => {
    socket.once('close', () => {
      isClosed = true;
      for (const listener of listeners) listener();
      resolve(Date.now());
    });
  });
  return {
    socket,
    write: (data) => {
      if (!socket.destroyed) socket.write(data);
    },
    response(timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          done(new Error(`no complete response within ${timeoutMs} ms; received: ${JSON.stringify(bytes.subarray(consumed, consumed + 500).toString('latin1'))}`));
        }, timeoutMs);
        const check = () => {
          let parsed: ReturnType<typeof parse>;
          try {
            parsed = parse(bytes.subarray(consumed));
          } catch (error) {
            done(error as Error);
            return;
          }
          if (parsed) {
            consumed += parsed.length;
            done(undefined, parsed.response);
          } else if (isClosed) done(new Error(`the connection closed before a complete response; received: ${JSON.stringify(bytes.subarray(consumed, consumed + 500).toString('latin1'))}`));
        };
        function done(error: Error | undefined, response?: RawResponse) {
          clearTimeout(timer);
          listeners.delete(check);
          if (error) reject(error);
          else if (response) resolve(response);
        }
        listeners.add(check);
        check();
      });
    },
    closed,
    get isClosed() {
      return isClosed;
    },
    received: () => bytes.toString('latin1'),
    destroy: () => socket.destroy(),
  };
}

/** Writes `chunk` as one chunk of a chunked body every `everyMs` until stopped (or the socket closes). */
export function trickle(connection: RawConnection, everyMs: number, chunk = 'x'): { stop(): void } {
  const hex = Buffer.byteLength(chunk).toString(16);
  const timer = setInterval(() => {
    if (connection.isClosed) clearInterval(timer);
    else connection.write(`${hex}\r\n${chunk}\r\n`);
  }, everyMs);
  return { stop: () => { clearInterval(timer); } };
}
