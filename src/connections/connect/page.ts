/**
 * The hosted connect page: plain server-rendered HTML, no script, every value escaped.
 *
 * A tenant's branding is hostile input as far as this file is concerned: the display name is
 * escaped text, the accent colour is used only if it is exactly `#rrggbb` (checked again here,
 * not only when it was stored), and the logo only if it is an https URL; its origin is the one
 * image source the page's CSP allows (see `pageCsp`).
 */
import type { Branding } from '../../tenancy/branding.js';
import type { Provider } from '../providers.js';

const escape = (value: string) => value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const COLOUR = /^#[0-9a-fA-F]{6}$/;
const DEFAULT_ACCENT = '#1f4fd1';

/** The logo's URL if it is one the page may load (https, no credentials). */
function logoOf(branding: Branding | null): URL | undefined {
  if (branding?.logoUrl === undefined) return undefined;
  try {
    const url = new URL(branding.logoUrl);
    return url.protocol === 'https:' && url.username === '' && url.password === '' ? url : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The page's Content-Security-Policy. No script at all; styles inline only; images only from the
 * tenant's logo origin; forms post only to this server and, because a form post that ends in a
 * redirect is checked against `form-action` too, to the session's validated return origin.
 */
export function pageCsp(options: { branding: Branding | null; returnUrl: string | null }): string {
  const logo = logoOf(options.branding);
  const formTargets = ["'self'", ...(options.returnUrl === null ? [] : [new URL(options.returnUrl).origin])];
  return [
    "default-src 'none'",
    "style-src 'unsafe-inline'",
    ...(logo ? [`img-src ${logo.origin}`] : []),
    `form-action ${formTargets.join(' ')}`,
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join('; ');
}

const layout = (title: string, body: string, branding: Branding | null) => {
  const accent = branding?.accentColor !== undefined && COLOUR.test(branding.accentColor) ? branding.accentColor : DEFAULT_ACCENT;
  const logo = logoOf(branding);
  const brand = branding?.displayName === undefined ? '' : `<p class="brand" id="brand">${logo ? `<img src="${escape(logo.href)}" alt="" height="32">` : ''}<span>${escape(branding.displayName)}</span></p>`;
  const pageTitle = branding?.displayName === undefined ? title : `${title} · ${branding.displayName}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(pageTitle)}</title>
<style>:root{--accent:${accent}}body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#111}
.brand{display:flex;align-items:center;gap:.5rem;font-weight:600;border-bottom:3px solid var(--accent);padding-bottom:.5rem}
section{border:1px solid #ccc;border-top:3px solid var(--accent);border-radius:.5rem;padding:1rem;margin:1rem 0}label{display:block;margin:.5rem 0}
input{width:100%;padding:.4rem;box-sizing:border-box}button,.button{display:inline-block;padding:.5rem 1rem;margin-top:.5rem;background:var(--accent);color:#fff;border:0;border-radius:.3rem;text-decoration:none}
.error{color:#a00}</style></head>
<body><main>${brand}<h1>${escape(title)}</h1>${body}</main></body></html>`;
};

export function providerPage(token: string, providers: readonly Provider[], branding: Branding | null): string {
  const base = `/connect/${encodeURIComponent(token)}`;
  const sections = providers.map((p) => {
    const heading = `<h2>${escape(p.name)}</h2>`;
    switch (p.authType) {
      case 'oauth2_code':
        return `<section data-provider="${escape(p.key)}">${heading}<a class="button" href="${base}/oauth/${encodeURIComponent(p.key)}">Connect with ${escape(p.name)}</a></section>`;
      case 'api_key':
        return `<section data-provider="${escape(p.key)}">${heading}<form method="post" action="${base}/credentials" autocomplete="off">
<input type="hidden" name="provider" value="${escape(p.key)}"><label>API key <input name="apiKey" type="password" required maxlength="8192"></label>
<button type="submit">Connect</button></form></section>`;
      case 'basic':
        return `<section data-provider="${escape(p.key)}">${heading}<form method="post" action="${base}/credentials" autocomplete="off">
<input type="hidden" name="provider" value="${escape(p.key)}"><label>Username <input name="username" required maxlength="500"></label>
<label>Password <input name="password" type="password" required maxlength="8192"></label><button type="submit">Connect</button></form></section>`;
      case 'oauth2_client_credentials':
        return `<section data-provider="${escape(p.key)}">${heading}<form method="post" action="${base}/credentials">
<input type="hidden" name="provider" value="${escape(p.key)}"><button type="submit">Connect</button></form></section>`;
    }
  });
  return layout('Connect an account', sections.length > 0 ? sections.join('\n') : '<p>No providers are available for this link.</p>', branding);
}

export const donePage = (providerName: string, branding: Branding | null) =>
  layout('Connected', `<p id="result">Your ${escape(providerName)} account is connected. You can close this window.</p>`, branding);

export const errorPage = (message: string, branding: Branding | null = null) => layout('Could not connect', `<p class="error" id="result">${escape(message)}</p>`, branding);
