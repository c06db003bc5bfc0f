import { describe, expect, it } from 'vitest';
import { matchesFilter, validateFilter } from './filter.js';
import { isEventType, matchesPattern } from './patterns.js';

describe('event type patterns', () => {
  it.each([
    ['*', 'invoice.paid', true], ['invoice.*', 'invoice.paid', true], ['invoice.*', 'invoice.payment.failed', true], ['invoice.*', 'invoice', false],
    ['invoice.paid', 'invoice.paid', true], ['invoice.paid', 'invoice.paid.late', false], ['invoice.*.failed', 'invoice.payment.failed', true],
    ['invoice.*.failed', 'invoice.payment.ok', false], ['customer.*', 'invoice.paid', false], ['*.paid', 'invoice.paid', true], ['*.paid', 'invoice.x.paid', false],
    // Bulkhead's own namespace is matched only by patterns that name it.
    ['*', 'bulkhead.delivery.failing', false], ['*.*.failing', 'bulkhead.delivery.failing', false], ['bulkhead.*', 'bulkhead.delivery.failing', true],
    ['bulkhead.delivery.failing', 'bulkhead.delivery.failing', true], ['bulkhead.destination.*', 'bulkhead.delivery.failing', false],
  ])('%s vs %s → %s', (pattern, type, expected) => {
    expect(matchesPattern(pattern, type)).toBe(expected);
  });

  it('validates event types', () => {
    expect(isEventType('invoice.paid')).toBe(true);
    for (const bad of ['Invoice.paid', 'invoice..paid', '.invoice', 'invoice paid', 'a'.repeat(201), '', 'in/voice']) expect(isEventType(bad), bad).toBe(false);
  });
});

describe('payload filters', () => {
  const payload = { amount: 120, currency: 'eur', customer: { country: 'DE', tags: ['vip'] }, refunded: false };
  it.each([
    [{ currency: 'eur' }, true], [{ currency: 'usd' }, false], [{ amount: { $gt: 100 } }, true], [{ amount: { $gt: 100, $lt: 120 } }, false],
    [{ 'customer.country': { $in: ['DE', 'FR'] } }, true], [{ 'customer.country': { $nin: ['DE'] } }, false], [{ 'customer.tags': ['vip'] }, true],
    [{ refunded: { $exists: true } }, true], [{ missing: { $exists: false } }, true], [{ missing: { $ne: 1 } }, true], [{ amount: { $gt: '100' } }, false],
    [{ $or: [{ currency: 'usd' }, { amount: { $gte: 120 } }] }, true], [{ $and: [{ currency: 'eur' }, { refunded: true }] }, false], [{ $not: { currency: 'usd' } }, true],
    [{ '__proto__.polluted': { $exists: true } }, false], [{ 'constructor.name': 'Object' }, false],
  ])('%j → %s', (filter, expected) => {
    expect(validateFilter(filter)).toEqual([]);
    expect(matchesFilter(filter, payload)).toBe(expected);
  });

  it('refuses unknown operators, code-like values, bad shapes and oversized filters, listing every problem', () => {
    expect(validateFilter({ $where: 'this.amount > 1' })).toHaveLength(1);
    expect(validateFilter({ amount: { $regex: '.*' }, currency: { $in: 'eur' }, $or: [] })).toHaveLength(3);
    expect(validateFilter({ 'a b': 1 })).toHaveLength(1);
    expect(validateFilter({ $not: { $not: { $not: { $not: { $not: { $not: { $not: { a: 1 } } } } } } } })).toHaveLength(1);
    expect(validateFilter({ a: 'x'.repeat(9000) })).toHaveLength(1);
    expect(validateFilter([1])).toHaveLength(1);
  });
});
