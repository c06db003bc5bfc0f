/**
 * Trusted guest-side bootstrap, evaluated in every fresh context before the tenant's code. It
 * receives the two raw host hooks as arguments (they never appear on `globalThis`), builds the
 * frozen `ctx`, removes globals that have no business in a transform, and returns `invoke`.
 *
 * It captures JSON and Promise before tenant code runs, but nothing here is a security boundary:
 * the tenant can only break its own execution. The host validates every value that comes out
 * (types, sizes, capability names) as untrusted input.
 */
export const PRELUDE = String.raw`(function (rawCall, rawLog, configJson, capabilitiesJson, lineChars) {
  'use strict';
  const parse = JSON.parse;
  const stringify = JSON.stringify;
  const freeze = Object.freeze;
  const create = Object.create;
  const keys = Object.keys;
  const PromiseCtor = Promise;
  const ProxyCtor = Proxy;
  const StringCtor = String;
  for (const name of ['SharedArrayBuffer', 'Atomics', 'WeakRef', 'FinalizationRegistry', 'WebAssembly']) delete globalThis[name];
  const deepFreeze = (value) => {
    if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
      freeze(value);
      for (const key of keys(value)) deepFreeze(value[key]);
    }
    return value;
  };
  const format = (value) => {
    if (typeof value === 'string') return value;
    try {
      const json = stringify(value);
      if (typeof json === 'string') return json;
    } catch {}
    try { return StringCtor(value); } catch { return '[unprintable]'; }
  };
  const log = freeze(function log(...args) {
    let line = '';
    for (let i = 0; i < args.length && line.length <= lineChars; i++) line += (i === 0 ? '' : ' ') + format(args[i]);
    rawLog(line.length > lineChars ? line.slice(0, lineChars) : line);
  });
  async function callHost(name, argument) {
    let json = stringify(argument === undefined ? null : argument);
    if (typeof json !== 'string') json = 'null';
    return parse(await rawCall(name, json));
  }
  const capability = (name) => freeze(function (argument) { return callHost(name, argument); });
  const readOnly = { set() { return false; }, defineProperty() { return false; }, deleteProperty() { return false; } };
  const perConnection = create(null);
  // Any connections.<name>.<method> is callable so that an ungranted one reaches the host's
  // check and fails as capability_denied instead of as an anonymous TypeError.
  const connections = new ProxyCtor(freeze(create(null)), {
    ...readOnly,
    get(_target, connection) {
      if (typeof connection !== 'string' || connection === 'then') return undefined;
      return perConnection[connection] ??= new ProxyCtor(freeze(create(null)), {
        ...readOnly,
        get(_inner, method) {
          if (typeof method !== 'string' || method === 'then') return undefined;
          return capability('connections.' + connection + '.' + method);
        },
      });
    },
  });
  const others = create(null);
  for (const name of parse(capabilitiesJson)) {
    const parts = name.split('.');
    if (parts[0] === 'connections') continue;
    let node = others;
    for (let i = 0; i < parts.length - 1; i++) node = node[parts[i]] ??= create(null);
    node[parts[parts.length - 1]] = capability(name);
  }
  const ctx = freeze({ ...deepFreeze(others), config: deepFreeze(parse(configJson)), log, connections });
  return function invoke(entry, eventJson) {
    const event = parse(eventJson);
    // Called synchronously, not from a promise job: QuickJS leaks (and then asserts at teardown)
    // when an out-of-memory error unwinds through a job, so keep the common path out of jobs.
    let result;
    try { result = entry(event, ctx); } catch (error) { return PromiseCtor.reject(error); }
    return PromiseCtor.resolve(result).then((value) => {
      const json = stringify(value === undefined ? null : value);
      return typeof json === 'string' ? json : 'null';
    });
  };
})`;
