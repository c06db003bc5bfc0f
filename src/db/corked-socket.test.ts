import net from 'node:net';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { CorkedSocket } from './corked-socket.js';

describe('CorkedSocket', () => {
  let server: net.Server | undefined;
  afterEach(() => server?.close());

  async function connected(): Promise<{ socket: CorkedSocket; received: () => Promise<string>; writes: number[] }> {
    let text = '';
    const done = new Promise<string>((resolve) => {
      server = net.createServer((peer) => {
        peer.on('data', (chunk: Buffer) => (text += chunk.toString()));
        peer.on('end', () => { resolve(text); });
      });
    });
    server?.listen(0, '127.0.0.1');
    await once(server as net.Server, 'listening');
    const socket = new CorkedSocket();
    socket.connect((server?.address() as net.AddressInfo).port, '127.0.0.1');
    await once(socket, 'connect');
    // How many chunks each system-call-level write carried.
    const writes: number[] = [];
    const writev = socket._writev?.bind(socket);
    const write = socket._write.bind(socket);
    socket._writev = (chunks, callback) => {
      writes.push(chunks.length);
      writev?.(chunks, callback);
    };
    socket._write = (chunk: Buffer, encoding, callback) => {
      writes.push(1);
      write(chunk, encoding, callback);
    };
    return { socket, received: () => done, writes };
  }

  it('sends what one turn wrote in one write, and the next turn in another, in order', async () => {
    const { socket, received, writes } = await connected();
    socket.write('a');
    socket.write('b');
    socket.write('c');
    await new Promise((resolve) => setImmediate(resolve));
    socket.write('d');
    await new Promise((resolve) => setImmediate(resolve));
    socket.end();
    expect(await received()).toBe('abcd');
    expect(writes).toEqual([3, 1]);
  });

  it('a plain socket writes each chunk on its own (so the test above can fail)', async () => {
    const { socket, received, writes } = await connected();
    // Undo the batching write the class installs on connect.
    socket.write = net.Socket.prototype.write.bind(socket);
    socket.write('a');
    socket.write('b');
    await new Promise((resolve) => setImmediate(resolve));
    socket.end();
    expect(await received()).toBe('ab');
    expect(writes[0]).toBe(1);
  });
});
