/** Schema pieces shared by every route file. */
import { type TSchema, Type } from 'typebox';
import { idPattern, type IdKind } from '../ids.js';

/**
 * Names a schema for the OpenAPI document: it is described once in `components.schemas` under
 * this title and referenced wherever it is used (openapi.ts). Validation is unchanged: `title` is
 * an annotation.
 */
export const named = <T extends TSchema>(title: string, schema: T): T => Object.assign(schema, { title });

export const Id = (kind: IdKind) => Type.String({ pattern: idPattern(kind), maxLength: 40 });

export const IdParams = (kind: IdKind) => Type.Object({ id: Type.String({ maxLength: 64 }) }, { additionalProperties: false, description: `${kind} id` });

export const PageQuery = Type.Object(
  {
    cursor: Type.Optional(Type.String({ maxLength: 200 })),
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
  },
  { additionalProperties: false },
);

/** A page of a list; a page of a named schema is named too (`TenantPage`), so the document describes it once. */
export const Page = <T extends TSchema>(item: T) => {
  const page = Type.Object({ data: Type.Array(item), nextCursor: Type.Union([Type.String(), Type.Null()]) });
  const title = (item as { title?: unknown }).title;
  return typeof title === 'string' ? named(`${title}Page`, page) : page;
};

export const Timestamp = Type.String({ format: 'date-time' });
export const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
export const NullableTimestamp = Type.Union([Timestamp, Type.Null()]);

