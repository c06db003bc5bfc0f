/**
 * A tenant's branding for the hosted connect page. Everything here ends up in HTML, so each field
 * is held to a shape that cannot break out of where the page puts it: the display name is
 * escaped as text, the colour must be exactly `#rrggbb` (it lands in a style attribute), and the
 * logo must be an https URL (it lands in `src`, and its origin in the page's `img-src`).
 */
import { Type } from 'typebox';
import { checkWebUrl } from '../http/web-url.js';
import { named } from '../http/schemas.js';
import { bodyFieldInvalid } from '../http/validation.js';

export interface Branding {
  readonly displayName?: string;
  readonly logoUrl?: string;
  readonly accentColor?: string;
}

export const BrandingSchema = named('Branding', Type.Object(
  {
    displayName: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    logoUrl: Type.Optional(Type.String({ maxLength: 2000, description: 'https only' })),
    accentColor: Type.Optional(Type.String({ pattern: '^#[0-9a-fA-F]{6}$', description: '`#rrggbb`' })),
  },
  { additionalProperties: false },
));

/** The branding as stored: the logo URL normalised, or `validation_failed` naming the field. */
export function checkBranding(input: Branding): Branding {
  if (input.logoUrl === undefined) return input;
  const checked = checkWebUrl(input.logoUrl, { httpHosts: [] });
  if (!checked.ok) throw bodyFieldInvalid('/branding/logoUrl', checked.reason);
  return { ...input, logoUrl: checked.url.href };
}
