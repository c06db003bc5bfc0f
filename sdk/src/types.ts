/**
 * What each operation takes and returns, read off the generated `operations` interface: path
 * parameters at the top level of the input, `query` and `body` beside them; the output is the
 * success response's JSON (`undefined` for 204, the raw `Response` for the relay).
 */
import type { operations as Operations } from './openapi.js';
import type { operations as table } from './operations.js';

export type OperationId = keyof Operations;
/** A relay body, as fetch takes it. */
export type RawBody = NonNullable<RequestInit['body']>;
type Op<K extends OperationId> = Operations[K];

/** A part the operation declares, or never when it declares none (`path?: never`). */
type Declared<T> = [NonNullable<T>] extends [never] ? never : NonNullable<T>;
type ParamsPart<K extends OperationId, Where extends 'path' | 'query'> = Op<K> extends { parameters: infer P } ? (P extends Partial<Record<Where, unknown>> ? Declared<P[Where]> : never) : never;

export type PathParams<K extends OperationId> = ParamsPart<K, 'path'>;
export type Query<K extends OperationId> = ParamsPart<K, 'query'>;
type BodyPart<K extends OperationId> = Op<K> extends { requestBody?: infer B } ? Declared<B> : never;
// `[…] extends [never]` first: `never extends { content: … }` holds, and would infer `unknown`.
export type Body<K extends OperationId> = [BodyPart<K>] extends [never] ? never : BodyPart<K> extends { content: { 'application/json': infer J } } ? J : never;

type SuccessStatus = 200 | 201 | 202 | 203 | 204 | 206;
type Responses<K extends OperationId> = Op<K> extends { responses: infer R } ? R : never;
type SuccessKeys<K extends OperationId> = Extract<keyof Responses<K>, SuccessStatus>;
/** A success answer without a JSON body, other than 204, is passed through (the relay). */
export type IsRaw<K extends OperationId> = { [S in SuccessKeys<K>]: Responses<K>[S] extends { content: { 'application/json': unknown } } ? false : S extends 204 ? false : true }[SuccessKeys<K>] extends false ? false : true;
export type Output<K extends OperationId> = IsRaw<K> extends true
  ? Response
  : { [S in SuccessKeys<K>]: Responses<K>[S] extends { content: { 'application/json': infer J } } ? J : undefined }[SuccessKeys<K>];

type Optional<T> = object extends T ? true : false;
type Entries = { [G in keyof typeof table]: (typeof table)[G][keyof (typeof table)[G]] }[keyof typeof table];
/** Operations whose body may be left out (the generator's `body: 'optional'`: `{}` is valid). */
type BodyOptional = Extract<Entries, { body: 'optional' }> extends { operationId: infer K } ? K : never;
type QueryInput<K extends OperationId> = [Query<K>] extends [never] ? object : Optional<Query<K>> extends true ? { query?: Query<K> } : { query: Query<K> };
type BodyInput<K extends OperationId> = IsRaw<K> extends true
  ? { body?: RawBody }
  : [Body<K>] extends [never]
    ? object
    : K extends BodyOptional
      ? { body?: Body<K> }
      : { body: Body<K> };
type PathInput<K extends OperationId> = [PathParams<K>] extends [never] ? object : PathParams<K>;

export type Input<K extends OperationId> = PathInput<K> & QueryInput<K> & BodyInput<K>;

export interface RequestOptions {
  /** Extra request headers (the relay passes them on). */
  readonly headers?: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
  /** For `events.create` / `events.createBatch`: the key to send; one is generated otherwise. */
  readonly idempotencyKey?: string;
}

/** One operation as a method: the input may be left out when nothing in it is required. */
export type Method<K extends OperationId> = Optional<Input<K>> extends true
  ? (input?: Input<K>, options?: RequestOptions) => Promise<Output<K>>
  : (input: Input<K>, options?: RequestOptions) => Promise<Output<K>>;

/** The items of a paginated answer (`{ data: T[], nextCursor }`). */
export type Item<K extends OperationId> = Output<K> extends { data: (infer T)[] } ? T : never;

/** A list method also iterates every page: `for await (const e of bulkhead.events.list.all())`. */
export type PaginatedMethod<K extends OperationId> = Method<K> & {
  all(input?: Input<K>, options?: RequestOptions): AsyncIterableIterator<Item<K>>;
};
