/**
 * The socket `pg` talks to PostgreSQL through, writing what one turn of the event loop produced
 * in one system call.
 *
 * `pg` corks the socket for each statement it sends, but only for that statement: in pipeline
 * mode a transaction's BEGIN (a simple query), its workspace context and its first statement
 * (see postgres.ts) still left as three writes, each a system call with Nagle off. Corked on the
 * first write of a turn and uncorked on the next tick, they leave as one `writev`. Nothing waits
 * longer than the current turn, so latency is unchanged.
 */
import net from 'node:net';

type Write = net.Socket['write'];

export class CorkedSocket extends net.Socket {
  #corked = false;

  override connect(...args: unknown[]): this {
    super.connect(...(args as Parameters<net.Socket['connect']>));
    // node:net's connect() puts Socket.prototype.write back on the instance (undoing a closed
    // socket's write-after-end guard), so a `write` method of this class would be shadowed:
    // the batching write goes on the instance, after it.
    const write: Write = net.Socket.prototype.write.bind(this);
    this.write = ((...writeArgs: Parameters<Write>) => {
      if (!this.#corked) {
        this.#corked = true;
        this.cork();
        process.nextTick(() => {
          this.#corked = false;
          this.uncork();
        });
      }
      return write(...writeArgs);
    }) as Write;
    return this;
  }
}
