/**
 * How `bulkhead serve` ends on SIGTERM or SIGINT. The server stops accepting and lets what is in
 * flight finish within the grace period, then cuts the rest (`App.close`). Whatever still holds the
 * process after that (a handle nobody closed, a hung database driver) does not keep it: one second
 * after the grace period the process exits regardless, with status 1 so a supervisor can tell.
 * A second signal exits at once, for the operator who has decided not to wait.
 */
import type { Logger } from '../logging.js';

/** What a forced exit waits after the grace period, for closing the database and the log. */
export const EXIT_SLACK_MS = 1_000;

export interface ShutdownOptions {
  readonly graceMs: number;
  readonly logger: Logger;
  /** Drains and closes everything; `graceMs` bounds its draining, not the closing after it. */
  readonly stop: (graceMs: number) => Promise<void>;
  /** `process.exit`, replaceable in tests. */
  readonly exit?: (code: number) => void;
}

/** Installs the handlers; returns a function that removes them (for tests). */
export function exitOnSignals(options: ShutdownOptions): () => void {
  const exit = options.exit ?? ((code: number) => process.exit(code));
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      options.logger.warn({ signal }, 'second signal: exiting now');
      exit(1);
      return;
    }
    stopping = true;
    options.logger.info({ signal, graceMs: options.graceMs }, 'shutting down');
    const deadline = setTimeout(() => {
      options.logger.error({ graceMs: options.graceMs }, 'shutdown overran its grace period: exiting');
      exit(1);
    }, options.graceMs + EXIT_SLACK_MS);
    deadline.unref();
    options.stop(options.graceMs).then(
      () => {
        clearTimeout(deadline);
        options.logger.info('stopped');
        exit(0);
      },
      (error: unknown) => {
        clearTimeout(deadline);
        options.logger.error({ err: error }, 'shutdown failed');
        exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}
