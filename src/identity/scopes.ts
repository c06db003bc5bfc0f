/** Scopes an API key can hold. `r:write` implies `r:read`; `*` implies everything. */
export const scopedResources = ['events', 'connections', 'destinations', 'rules', 'deliveries', 'integrations', 'inbound'] as const;

export const allScopes = [
  ...scopedResources.flatMap((r) => [`${r}:read`, `${r}:write`] as const),
  'proxy',
  'keys:manage',
  'audit:read',
  'usage:read',
  '*',
] as const;

export type Scope = (typeof allScopes)[number];

export function hasScope(granted: readonly string[], required: Scope): boolean {
  if (granted.includes('*') || granted.includes(required)) return true;
  return required.endsWith(':read') && granted.includes(`${required.slice(0, -':read'.length)}:write`);
}
