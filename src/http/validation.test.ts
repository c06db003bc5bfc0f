/** The validation describer on Ajv's own errors, including schemas and error lists the routes rarely produce. */
import { Ajv } from 'ajv';
import { Type, type TSchema } from 'typebox';
import { describe, expect, it } from 'vitest';
import { describeValidation, MAX_VALIDATION_ERRORS, summarise } from './validation.js';

const errorsFor = (schema: TSchema, value: unknown, allErrors = false) => {
  const validate = new Ajv({ allErrors, verbose: true, strict: false }).compile(schema);
  expect(validate(value)).toBe(false);
  return describeValidation(validate.errors ?? [], 'body');
};

const Color = Type.Union([Type.Literal('red'), Type.Literal('green'), Type.Literal('blue')], { title: 'colour' });

describe('validation problems in words', () => {
  it('collapses a union of literals into one entry naming the value and the allowed ones', () => {
    expect(errorsFor(Type.Object({ c: Color }), { c: 'purple' })).toEqual([{ location: 'body', pointer: '/c', message: 'unknown colour "purple"; allowed: red, green, blue' }]);
    expect(errorsFor(Type.Object({ c: Type.Union([Type.Literal('a'), Type.Literal('b')]) }), { c: 1 })).toEqual([{ location: 'body', pointer: '/c', message: 'unknown value 1; allowed: a, b' }]);
  });

  it('says a nullable value must be its type or null', () => {
    expect(errorsFor(Type.Object({ n: Type.Union([Type.String(), Type.Null()]) }), { n: 3 })[0]?.message).toBe('must be a string or null (got a number)');
  });

  it('describes the branch a value got into, not the branches it never matched', () => {
    const Shape = Type.Union([Type.Object({ kind: Type.Literal('circle'), r: Type.Number() }, { additionalProperties: false }), Type.Object({ kind: Type.Literal('square'), side: Type.Number() }, { additionalProperties: false })]);
    expect(errorsFor(Type.Object({ s: Shape }), { s: { kind: 'circle', r: 'big' } })).toEqual([{ location: 'body', pointer: '/s/r', message: 'must be a number (got a string)' }]);
  });

  it('lists one entry per mistake, at most MAX_VALIDATION_ERRORS, with every error on (allErrors)', () => {
    const schema = Type.Object({ colours: Type.Array(Color) }, { additionalProperties: false });
    const few = errorsFor(schema, { colours: ['red', 'pink', 'teal'], extra: 1 }, true);
    expect(few.map((e) => `${e.pointer}: ${e.message}`)).toEqual([': unknown property "extra"', '/colours/1: unknown colour "pink"; allowed: red, green, blue', '/colours/2: unknown colour "teal"; allowed: red, green, blue']);
    expect(summarise(few)).toBe('body /: unknown property "extra" (and 2 more problems in errors)');
    const many = errorsFor(schema, { colours: Array.from({ length: 500 }, (_, i) => `c${String(i)}`) }, true);
    expect(many).toHaveLength(MAX_VALIDATION_ERRORS);
    expect(many[0]).toMatchObject({ pointer: '/colours/0', message: 'unknown colour "c0"; allowed: red, green, blue' });
  });

  it('quotes long values shortened', () => {
    const [entry] = errorsFor(Type.Object({ s: Type.String({ pattern: '^a+$' }) }), { s: 'b'.repeat(10_000) });
    expect(entry?.message.length).toBeLessThan(120);
    expect(entry?.message).toMatch(/^"b+… does not match the pattern \^a\+\$$/);
  });
});
