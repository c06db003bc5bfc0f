/** The hosted connect page: plain server-rendered HTML, no script, every value escaped. */
import type { Provider } from '../providers.js';

const escape = (value: string) => value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const layout = (title: string, body: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#111}
section{border:1px solid #ccc;border-radius:.5rem;padding:1rem;margin:1rem 0}label{display:block;margin:.5rem 0}
input{width:100%;padding:.4rem;box-sizing:border-box}button,.button{padding:.5rem 1rem;margin-top:.5rem}
.error{color:#a00}</style></head>
<body><main><h1>${escape(title)}</h1>${body}</main></body></html>`;

export function providerPage(token: string, providers: readonly Provider[]): string {
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
  return layout('Connect an account', sections.length > 0 ? sections.join('\n') : '<p>No providers are available for this link.</p>');
}

export const donePage = (providerName: string) =>
  layout('Connected', `<p id="result">Your ${escape(providerName)} account is connected. You can close this window.</p>`);

export const errorPage = (message: string) => layout('Could not connect', `<p class="error" id="result">${escape(message)}</p>`);
