export { Bulkhead, type BulkheadOptions, type Groups, type RetryOptions } from './client.js';
export { BulkheadApiError, UNEXPECTED_RESPONSE, type ErrorCode, type Problem } from './errors.js';
export type { Body, Input, Item, Method, OperationId, Output, PaginatedMethod, PathParams, Query, RequestOptions } from './types.js';
export { verifyWebhook, WebhookVerificationError, type VerifyOptions, type WebhookEvent, type WebhookFailure, type WebhookHeaders } from './webhooks.js';
export { operations } from './operations.js';
export type { components, operations as OperationTypes, paths } from './openapi.js';
