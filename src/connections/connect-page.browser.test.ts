/**
 * The hosted connect page in a real browser (Debian's Chromium driven by playwright-core): an end
 * user pastes an API key into the form, and another goes through the OAuth flow at a real
 * authorization server (login and consent forms), landing back on Bulkhead's callback page. A
 * branded page shows a hostile display name as text and, after the form, returns the user to the
 * platform's returnUrl (allowed by the page's CSP form-action, which Chromium enforces on redirects).
 */
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { startOAuthServer, type TestOAuthServer } from '../testing/oauth-server.js';
import { startUpstream, type Upstream } from '../testing/upstream.js';

const CHROMIUM = process.env['BULKHEAD_TEST_CHROMIUM'] ?? '/usr/bin/chromium';
const required = process.env['CI'] === 'true' || process.env['BULKHEAD_TEST_REQUIRE_BROWSER'] === '1';
const missing = existsSync(CHROMIUM) ? null : `Chromium not found at ${CHROMIUM} (apt-get install chromium, or set BULKHEAD_TEST_CHROMIUM)`;
if (missing !== null) {
  if (required) throw new Error(`${missing}; the browser suite is required here`);
  process.stderr.write(`\n${'!'.repeat(78)}\n!! ${missing}\n!! The browser suite is SKIPPED.\n${'!'.repeat(78)}\n\n`);
}

const pglite = backends.find((b) => b.name === 'pglite');

describe.skipIf(missing !== null || pglite === undefined)('the hosted connect page in Chromium', () => {
  let t: TestApp;
  let oauth: TestOAuthServer;
  let upstream: Upstream;
  let browser: Browser;
  let base: string;

  beforeAll(async () => {
    t = await startTestApp(pglite as NonNullable<typeof pglite>, { config: { egressAllowCidrs: ['127.0.0.1/32'], connectHttpReturnHosts: ['127.0.0.1'] } });
    base = await t.app.http.listen({ host: '127.0.0.1', port: 0 });
    t.app.core.setListeningOn(base);
    oauth = await startOAuthServer({ redirectUris: [`${base}/oauth/callback`] });
    upstream = await startUpstream();
    await t.admin('POST', '/v1/providers', { key: 'browser-idp', name: 'Browser IdP', authType: 'oauth2_code', baseUrls: [upstream.url], oauth2: { authorizeUrl: oauth.authorizeUrl, tokenUrl: oauth.tokenUrl, scopes: ['openid', 'offline_access', 'api:read'], clientId: oauth.clientId, clientSecret: oauth.clientSecret } });
    await t.admin('POST', '/v1/providers', { key: 'browser-key', name: 'Browser Key API', authType: 'api_key', baseUrls: [upstream.url], apiKey: { in: 'header', name: 'X-Api-Key' } });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  }, 60_000);
  afterAll(async () => {
    await browser.close();
    await t.close();
    await oauth.close();
    await upstream.close();
  });

  const session = async (key: string, providers: string[]) =>
    (await t.request({ method: 'POST', url: '/v1/connect-sessions', token: key, json: { allowedProviders: providers, connectionName: `via-browser-${providers.join('-')}` } })).json<{ url: string }>().url;

  it('connects an API-key account through the form; the secret goes only to Bulkhead', async () => {
    const { key } = await t.workspaceWithKey(['connections:write', 'proxy']);
    const page = await browser.newPage();
    const response = await page.goto(await session(key, ['browser-key', 'browser-idp']));
    expect(response?.status()).toBe(200);
    expect(response?.headers()['content-security-policy']).toContain("default-src 'none'");
    expect(await page.locator('section[data-provider]').count()).toBe(2);
    await page.fill('section[data-provider="browser-key"] input[name="apiKey"]', 'sk_browser_0123456789abcdef');
    await page.click('section[data-provider="browser-key"] button[type="submit"]');
    await expect.poll(() => page.textContent('#result')).toContain('connected');
    await page.close();

    const list = (await t.request({ method: 'GET', url: '/v1/connections', token: key })).json<{ data: { id: string; hint: string; provider: string }[] }>().data;
    expect(list).toEqual([expect.objectContaining({ provider: 'browser-key', hint: '…cdef' })]);
    upstream.requests.length = 0;
    expect((await t.request({ method: 'GET', url: `/v1/proxy/${list[0]?.id ?? ''}/ping`, token: key })).statusCode).toBe(200);
    expect(upstream.requests[0]?.headers['x-api-key']).toBe('sk_browser_0123456789abcdef');
  });

  it('connects an OAuth account: login and consent at the provider, back to the callback page', async () => {
    const { key } = await t.workspaceWithKey(['connections:write']);
    const page = await browser.newPage();
    await page.goto(await session(key, ['browser-idp']));
    await page.click('section[data-provider="browser-idp"] a');
    // oidc-provider's own login form, then its consent form.
    await page.waitForSelector('input[name="login"]');
    await page.fill('input[name="login"]', 'end-user-7');
    await page.fill('input[name="password"]', 'irrelevant');
    await page.click('button[type="submit"]');
    // A consent page may follow (the test server reuses consent, so usually it does not).
    try {
      await page.waitForURL(`${base}/oauth/callback**`, { timeout: 5_000 });
    } catch {
      await page.click('button[type="submit"]');
      await page.waitForURL(`${base}/oauth/callback**`);
    }
    await expect.poll(() => page.textContent('#result')).toContain('connected');
    await page.close();

    const list = (await t.request({ method: 'GET', url: '/v1/connections', token: key })).json<{ data: { provider: string; status: string; expiresAt: string | null }[] }>().data;
    expect(list).toEqual([expect.objectContaining({ provider: 'browser-idp', status: 'active', expiresAt: expect.any(String) as string })]);
  });

  it('renders hostile branding as text, and sends the user back to returnUrl after the form', async () => {
    const { key, tenantId } = await t.workspaceWithKey(['connections:write']);
    const hostile = '<img src=x onerror="document.title=\'pwned\'">Acme & Co';
    const branded = await t.admin('PATCH', `/v1/tenants/${tenantId}`, { branding: { displayName: hostile, logoUrl: 'https://logo.invalid/acme.png', accentColor: '#0a7d3b' } });
    expect(branded.statusCode, branded.body).toBe(200);
    const created = await t.request({ method: 'POST', url: '/v1/connect-sessions', token: key, json: { allowedProviders: ['browser-key'], returnUrl: `${upstream.url}/platform/back?tab=1` } });
    expect(created.statusCode, created.body).toBe(201);
    const { id, url } = created.json<{ id: string; url: string }>();

    const page = await browser.newPage({ viewport: { width: 800, height: 560 } });
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(url);
    // The name is text: no element was injected, no handler ran.
    expect(await page.textContent('#brand span')).toBe(hostile);
    expect(await page.locator('#brand img').count()).toBe(1);
    expect(await page.locator('img[src="x"]').count()).toBe(0);
    expect(await page.title()).not.toBe('pwned');
    const accent = await page.locator('section[data-provider="browser-key"] button').evaluate((el): string => (globalThis as unknown as { getComputedStyle(e: unknown): { backgroundColor: string } }).getComputedStyle(el).backgroundColor);
    expect(accent).toBe('rgb(10, 125, 59)');
    await page.screenshot({ path: process.env['BULKHEAD_TEST_SCREENSHOT'] ?? `${tmpdir()}/bulkhead-connect-branded.png` });

    upstream.requests.length = 0;
    await page.fill('section[data-provider="browser-key"] input[name="apiKey"]', 'sk_branded_0123456789');
    await page.click('section[data-provider="browser-key"] button[type="submit"]');
    await page.waitForURL(`${upstream.url}/platform/back**`);
    const back = new URL(page.url());
    expect(back.searchParams.get('tab')).toBe('1');
    expect(back.searchParams.get('session')).toBe(id);
    expect(back.searchParams.get('status')).toBe('completed');
    expect(errors).toEqual([]);
    await page.close();
    expect((await t.request({ method: 'GET', url: `/v1/connect-sessions/${id}`, token: key })).json()).toMatchObject({ status: 'completed' });
  });
}, 120_000);
