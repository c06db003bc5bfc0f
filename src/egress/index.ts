/**
 * The egress module's public surface: the one outbound HTTP client, and the pure address policy
 * it applies (for callers that want to judge an address without sending anything).
 */
export { type AddressVerdict, type AllowList, classifyAddress, parseAllowList } from './address-policy.js';
export { createEgressClient, type EgressClient, type EgressMetrics, type EgressOptions, type EgressRequest, type EgressResponse, MAX_REDIRECTS } from './client.js';
export { BLOCK_REASONS, type BlockReason, EgressError, type EgressErrorCode, type EgressErrorDetails, isEgressError } from './errors.js';
export { type ResolvedAddress, type Resolver, systemResolver } from './resolve.js';
