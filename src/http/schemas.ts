/** Schema pieces shared by every route file. */
import { type TSchema, Type } from 'typebox';
import { idPattern, type IdKind } from '../ids.js';

export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    code: Type.String(),
    detail: Type.String(),
    requestId: Type.String(),
  },
  { additionalProperties: true, description: 'RFC 9457 problem details with a stable `code`' },
);

export const Id = (kind: IdKind) => Type.String({ pattern: idPattern(kind), maxLength: 40 });

export const IdParams = (kind: IdKind) => Type.Object({ id: Type.String({ maxLength: 64 }) }, { additionalProperties: false, description: `${kind} id` });

export const PageQuery = Type.Object(
  {
    cursor: Type.Optional(Type.String({ maxLength: 200 })),
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
  },
  { additionalProperties: false },
);

export const Page = <T extends TSchema>(item: T) =>
  Type.Object({ data: Type.Array(item), nextCursor: Type.Union([Type.String(), Type.Null()]) });

export const Timestamp = Type.String({ format: 'date-time' });
export const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
export const NullableTimestamp = Type.Union([Timestamp, Type.Null()]);

/** Standard error responses, so the OpenAPI document tells clients what to expect. */
export const errorResponses = {
  400: Problem,
  401: Problem,
  403: Problem,
  404: Problem,
  409: Problem,
  413: Problem,
  415: Problem,
  422: Problem,
  429: Problem,
};
