import { describe, expect, it } from 'vitest';
import { defaultEventTypes, renderEventType, templateProblems } from './event-type.js';
import { toPayload } from './payload.js';

describe('event type templates', () => {
  it('accepts literal types and header/body placeholders, including every scheme default', () => {
    for (const template of ['github.push', 'github.{header:x-github-event}', 'stripe.{body:type}', 'a.{body:event.type}.{header:x-kind}', ...Object.values(defaultEventTypes)]) {
      expect(templateProblems(template), template).toEqual([]);
    }
  });

  it('refuses bad syntax, a placeholder namespace, the reserved namespace and too many placeholders', () => {
    for (const template of ['GitHub.push', 'a..b', '{header:x-github-event}', '{body:type}.x', 'bulkhead.inbound', 'a.{header:X Bad}', 'a.{body:$where}', 'a.{query:x}', 'a.{body:a}.{body:b}.{body:c}', `a.${'x'.repeat(100)}`]) {
      expect(templateProblems(template), template).not.toEqual([]);
    }
  });

  it('normalises what the sender supplies into type syntax and never lets it escape its segment budget', () => {
    const render = (template: string, headers: Record<string, string>, json?: unknown) => renderEventType(template, { headers, json });
    expect(render('github.{header:x-github-event}', { 'x-github-event': 'pull_request' })).toBe('github.pull_request');
    expect(render('stripe.{body:type}', {}, { type: 'invoice.payment_succeeded' })).toBe('stripe.invoice.payment_succeeded');
    expect(render('slack.{body:event.type}', {}, { event: { type: 'app_mention' } })).toBe('slack.app_mention');
    expect(render('x.{body:type}', {}, { type: 'Hello World!/../..' })).toBe('x.hello_world_._');
    expect(render('x.{body:type}', {}, { type: '...' })).toBe('x.unknown');
    expect(render('x.{body:type}', {}, { type: { nested: true } })).toBe('x.unknown');
    expect(render('x.{body:type}', {}, undefined)).toBe('x.unknown');
    expect(render('x.{body:constructor}', {}, {})).toBe('x.unknown');
    expect(render('x.{header:x-kind}', {})).toBe('x.unknown');
    expect(render('x.{body:n}', {}, { n: 42 })).toBe('x.42');
    expect(render('x.{body:t}', {}, { t: 'a'.repeat(300) })).toHaveLength(2 + 48);
  });
});

describe('payloads of verified bodies', () => {
  it('parses JSON, decodes forms, keeps other text, and base64-encodes binary', () => {
    expect(toPayload(Buffer.from('{"a":[1,2]}'), 'application/json; charset=utf-8')).toEqual({ payload: { a: [1, 2] }, json: { a: [1, 2] } });
    expect(toPayload(Buffer.from('{"a":1}'), 'application/vnd.api+json').payload).toEqual({ a: 1 });
    expect(toPayload(Buffer.from('{"a":'), 'application/json')).toEqual({ payload: { contentType: 'application/json', text: '{"a":' }, json: undefined });
    expect(toPayload(Buffer.from('command=%2Fdeploy&tag=a&tag=b'), 'application/x-www-form-urlencoded').payload).toEqual({ command: '/deploy', tag: ['a', 'b'] });
    expect(toPayload(Buffer.from('plain words'), 'text/plain').payload).toEqual({ contentType: 'text/plain', text: 'plain words' });
    expect(toPayload(Buffer.from([0xff, 0x00, 0xfe]), undefined).payload).toEqual({ contentType: null, base64: '/wD+' });
  });

  it('keeps a form field named __proto__ as a plain field', () => {
    const payload = toPayload(Buffer.from('__proto__=x&__proto__=y&a=1'), 'application/x-www-form-urlencoded').payload as Record<string, unknown>;
    expect(Object.getPrototypeOf(payload)).toBe(Object.prototype);
    expect(Object.hasOwn(payload, '__proto__')).toBe(true);
    expect(JSON.parse(JSON.stringify(payload))).toMatchObject({ a: '1' });
  });
});
