/**
 * Builds the guest's `ctx` from the host, through QuickJS's handle API, instead of evaluating a
 * JavaScript prelude in every fresh context. In this WASM build QuickJS compiles at roughly
 * 3 µs per statement, so the former 3 KiB prelude cost ~0.5 ms of every execution; a handful of
 * handle operations cost ~1-3 µs each.
 *
 * Nothing here is a security boundary: the tenant can only break its own execution, and the
 * host validates what comes out (capability names, sizes) as untrusted input. The built-ins used
 * are captured before any tenant code runs, so tampering with `JSON` or `Promise` changes only
 * what the tenant's own code sees.
 */
import type { QuickJSContext, QuickJSHandle } from 'quickjs-emscripten-core';

/** Built-ins captured from a pristine context. */
export interface Intrinsics {
  readonly parse: QuickJSHandle;
  readonly stringify: QuickJSHandle;
  readonly freeze: QuickJSHandle;
  readonly promise: QuickJSHandle;
  readonly promiseResolve: QuickJSHandle;
  readonly string: QuickJSHandle;
  readonly construct: QuickJSHandle;
  readonly proxy: QuickJSHandle;
}

/** Globals that have no business in a transform: present in the pinned QuickJS build. */
const REMOVED_GLOBALS = ['SharedArrayBuffer'];
/**
 * Absent from a context with the default intrinsics of the pinned build (engine.ts), removed
 * should a later build add them. Probed first: deleting a property that does not exist costs
 * ~10 µs here, reading it ~2 µs.
 */
const REMOVED_IF_PRESENT = ['Atomics', 'WebAssembly', 'WeakRef', 'FinalizationRegistry'];

/** What the API needs from the execution that hosts it. */
export interface GuestApiHost {
  /** Registers a handle to dispose when the execution ends. */
  readonly own: (handle: QuickJSHandle) => QuickJSHandle;
  /** Whether a log line would still be kept (formatting is skipped otherwise). */
  logOpen(): boolean;
  log(line: string): void;
  /** True once the execution is being stopped (interrupt): skip further guest work. */
  halted(): boolean;
  /** Starts a host call whose argument is already JSON; returns the guest promise handle. */
  call(name: string, argsJson: string): QuickJSHandle;
  /** Longest log line in characters before byte truncation (as the old prelude did). */
  readonly lineChars: number;
}

/** Captures the built-ins and removes unwanted globals. Runs before tenant code. */
export function prepareGlobals(context: QuickJSContext, own: (h: QuickJSHandle) => QuickJSHandle): Intrinsics {
  const global = context.global;
  const read = (from: QuickJSHandle, key: string): QuickJSHandle => own(context.getProp(from, key));
  const json = read(global, 'JSON');
  const object = read(global, 'Object');
  const promise = read(global, 'Promise');
  const reflect = read(global, 'Reflect');
  const remove = read(reflect, 'deleteProperty');
  const present = REMOVED_IF_PRESENT.filter((name) => {
    const value = context.getProp(global, name);
    const found = context.typeof(value) !== 'undefined';
    value.dispose();
    return found;
  });
  for (const name of [...REMOVED_GLOBALS, ...present]) {
    const key = context.newString(name);
    context.callFunction(remove, context.undefined, global, key).dispose();
    key.dispose();
  }
  return {
    parse: read(json, 'parse'),
    stringify: read(json, 'stringify'),
    freeze: read(object, 'freeze'),
    promise,
    promiseResolve: read(promise, 'resolve'),
    string: read(global, 'String'),
    construct: read(reflect, 'construct'),
    proxy: read(global, 'Proxy'),
  };
}

/**
 * Builds the frozen `ctx`: `{ ...otherCapabilities, config, log, connections }`. Returns an
 * error handle instead when the config cannot be parsed inside the runtime (out of memory).
 */
export function buildCtx(context: QuickJSContext, intrinsics: Intrinsics, host: GuestApiHost, configJson: string, capabilities: readonly string[]): { ctx: QuickJSHandle } | { error: QuickJSHandle } {
  const { own } = host;
  const freeze = (h: QuickJSHandle): QuickJSHandle => {
    context.callFunction(intrinsics.freeze, context.undefined, h).dispose();
    return h;
  };
  const nullObject = (): QuickJSHandle => own(context.newObject(context.null));

  const config = parseConfig(context, intrinsics, configJson);
  if ('error' in config) return config;
  own(config.value);

  /**
   * A host call as the guest sees it: serializes its argument in the guest, returns a promise.
   * Not owned: handed to the guest once (disposed by the callback machinery) or owned by the caller.
   */
  const capability = (name: string): QuickJSHandle => freeze(context.newFunction('', (argument?: QuickJSHandle) => guarded(() => {
    let json = 'null';
    if (argument !== undefined && context.typeof(argument) !== 'undefined') {
      const result = context.callFunction(intrinsics.stringify, context.undefined, argument);
      // A cyclic or BigInt argument rejects in the guest, with the guest's own TypeError.
      if (result.error) return rejected(context, result.error);
      if (context.typeof(result.value) === 'string') json = context.getString(result.value);
      result.value.dispose();
    }
    return host.call(name, json);
  })));

  // Any connections.<name>.<method> is callable so that an ungranted one reaches the grant
  // check and fails as capability_denied instead of as an anonymous TypeError. Built on first
  // access (a getter on ctx): most transforms never touch it, and the proxies cost ~25 µs.
  let connections: QuickJSHandle | undefined;
  const connectionsProxy = (): QuickJSHandle => {
    if (connections !== undefined) return connections;
    const refuse = own(context.newFunction('', () => context.false));
    const proxy = (get: QuickJSHandle): QuickJSHandle => {
      const handler = nullObject();
      context.setProp(handler, 'get', get);
      for (const trap of ['set', 'defineProperty', 'deleteProperty']) context.setProp(handler, trap, refuse);
      const args = own(context.newArray());
      context.setProp(args, 0, freeze(nullObject()));
      context.setProp(args, 1, handler);
      const made = context.callFunction(intrinsics.construct, context.undefined, intrinsics.proxy, args);
      if (made.error) {
        made.error.dispose();
        return context.undefined;
      }
      return own(made.value);
    };
    // A property name as a string, or undefined for symbols and 'then' (so that `await` does
    // not treat the object as a thenable).
    const keyOf = (key: QuickJSHandle | undefined): string | undefined => {
      if (key === undefined || context.typeof(key) !== 'string') return undefined;
      const name = context.getString(key);
      return name === 'then' ? undefined : name;
    };
    const perConnection = new Map<string, QuickJSHandle>();
    connections = proxy(own(context.newFunction('get', (_target?: QuickJSHandle, key?: QuickJSHandle) => guarded(() => {
      const connection = keyOf(key);
      if (connection === undefined) return undefined;
      let inner = perConnection.get(connection);
      if (inner === undefined) {
        inner = proxy(own(context.newFunction('get', (_innerTarget?: QuickJSHandle, methodKey?: QuickJSHandle) => guarded(() => {
          const method = keyOf(methodKey);
          return method === undefined ? undefined : capability(`connections.${connection}.${method}`);
        }))));
        perConnection.set(connection, inner);
      }
      // The callback machinery disposes what it is handed: give it a copy of the cached handle.
      return inner.dup();
    }))));
    return connections;
  };

  const log = freeze(own(context.newFunction('log', (...args: QuickJSHandle[]) => guarded(() => {
    if (!host.logOpen() || host.halted()) return undefined;
    let line = '';
    for (let i = 0; i < args.length && line.length <= host.lineChars; i++) line += (i === 0 ? '' : ' ') + format(context, intrinsics, args[i] as QuickJSHandle, host);
    host.log(line.length > host.lineChars ? line.slice(0, host.lineChars) : line);
    return undefined;
  }))));

  // Other granted dotted names (e.g. kv.get) become nested frozen objects of capabilities.
  const materialize = (tree: CapabilityTree): QuickJSHandle => {
    const object = nullObject();
    for (const [key, node] of tree) context.setProp(object, key, typeof node === 'string' ? own(capability(node)) : materialize(node));
    return freeze(object);
  };
  const others = new Map<string, QuickJSHandle>();
  for (const [key, node] of capabilityTree(capabilities)) others.set(key, typeof node === 'string' ? own(capability(node)) : materialize(node));

  const ctx = own(context.newObject());
  for (const [key, value] of others) context.setProp(ctx, key, value);
  context.setProp(ctx, 'config', config.value);
  context.setProp(ctx, 'log', log);
  context.defineProp(ctx, 'connections', { enumerable: true, get: () => guarded(() => connectionsProxy().dup()) ?? context.undefined });
  return { ctx: freeze(ctx) };
}

/** Granted names other than connections.*, as a tree: a leaf holds the full capability name. */
type CapabilityTree = Map<string, CapabilityTree | string>;

function capabilityTree(capabilities: readonly string[]): CapabilityTree {
  const root: CapabilityTree = new Map();
  for (const name of capabilities) {
    const parts = name.split('.');
    if (parts[0] === 'connections') continue;
    const leaf = parts.pop() as string;
    let node: CapabilityTree | undefined = root;
    for (const part of parts) {
      const next: CapabilityTree | string | undefined = node.get(part);
      // A granted name that is also the prefix of another (`kv` and `kv.get`): the first one wins.
      if (typeof next === 'string') {
        node = undefined;
        break;
      }
      node = next ?? node.set(part, new Map()).get(part) as CapabilityTree;
    }
    if (node !== undefined && !node.has(leaf)) node.set(leaf, name);
  }
  return root;
}

/**
 * The config, parsed and deep-frozen in the guest. `{}` (the common case) is not parsed at all,
 * and a config without nested objects needs only its top level frozen.
 */
function parseConfig(context: QuickJSContext, intrinsics: Intrinsics, configJson: string): { value: QuickJSHandle } | { error: QuickJSHandle } {
  const freezeTop = (value: QuickJSHandle): { value: QuickJSHandle } => {
    context.callFunction(intrinsics.freeze, context.undefined, value).dispose();
    return { value };
  };
  if (configJson === '{}') return freezeTop(context.newObject());
  // configJson is JSON.stringify's output for an object: past its first character, a brace or
  // bracket can only open a nested value or sit inside a string (then the slow path is merely
  // taken needlessly).
  if (!configJson.includes('{', 1) && !configJson.includes('[')) {
    const text = context.newString(configJson);
    const parsed = context.callFunction(intrinsics.parse, context.undefined, text);
    text.dispose();
    return parsed.error ? { error: parsed.error } : freezeTop(parsed.value);
  }
  // JSON.parse calls the reviver bottom-up, after a value's own members are in place, so
  // freezing there deep-freezes the whole tree in one pass. The reviver is compiled in the
  // pristine context, before tenant code exists.
  const reviver = context.evalCode('(function (key, value) { return Object.freeze(value); })', 'sandbox:config');
  if (reviver.error) return { error: reviver.error };
  const text = context.newString(configJson);
  const parsed = context.callFunction(intrinsics.parse, context.undefined, text, reviver.value);
  text.dispose();
  reviver.value.dispose();
  return parsed.error ? { error: parsed.error } : { value: parsed.value };
}

/**
 * Runs the body of a host function called by the guest. A host exception would reach the guest
 * as an Error carrying the host's message; failing here is out of memory inside the runtime,
 * and the guest gets undefined instead (the execution fails on its own, classified from the
 * runtime's state).
 */
function guarded(body: () => QuickJSHandle | undefined): QuickJSHandle | undefined {
  try {
    return body();
  } catch {
    return undefined;
  }
}

/** A promise already rejected with `error` (consumed), for a capability that fails in the guest. */
function rejected(context: QuickJSContext, error: QuickJSHandle): QuickJSHandle {
  const deferred = context.newPromise();
  deferred.reject(error);
  error.dispose();
  return deferred.handle;
}

/** A log argument as text: strings as-is, other values as JSON, else String(value). */
function format(context: QuickJSContext, intrinsics: Intrinsics, value: QuickJSHandle, host: GuestApiHost): string {
  if (context.typeof(value) === 'string') return context.getString(value);
  for (const fn of [intrinsics.stringify, intrinsics.string]) {
    if (host.halted()) break;
    const result = context.callFunction(fn, context.undefined, value);
    if (result.error) {
      result.error.dispose();
      continue;
    }
    const text = context.typeof(result.value) === 'string' ? context.getString(result.value) : undefined;
    result.value.dispose();
    if (text !== undefined) return text;
  }
  return '[unprintable]';
}
