// Support for the browser tests: a real prolong server serving the demo page, Debian's Chromium
// driven by playwright-core (never a downloaded browser), and helpers that act like a person.

import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

import { chromium } from 'playwright-core'

import { PASSWORD, sleep, startServer } from '../../clients/js/test/support.js'
import { FILES, readRepoFile, startProxy } from './proxy.js'

export { PASSWORD, sleep }

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
export const artifacts = resolve(repoRoot, 'test-artifacts')
export const CHROMIUM = '/usr/bin/chromium'

export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is missing at ${CHROMIUM}: run scripts/test-js, which installs it with \`apt-get install -y chromium\``)
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    chromiumSandbox: false,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
}

// The origin that serves the demo page: the prolong server itself. It must serve the very files of
// the working tree (they are embedded at compile time), or the test would exercise stale code.
async function pageOrigin(server) {
  if (process.env.PROLONG_WEB_PROXY === '1') return startProxy(server.baseUrl)
  for (const [path, [file]] of Object.entries(FILES)) {
    const res = await fetch(new URL(path, server.baseUrl))
    if (res.status === 404) {
      throw new Error(
        `the prolong server does not serve the demo page (GET ${path} answered 404): build a binary with the web routes ` +
          '(`cargo build -p prolong-server`), or set PROLONG_WEB_PROXY=1 to serve web/ from the working tree through tests/browser/proxy.js',
      )
    }
    const served = await res.text()
    if (served !== (await readRepoFile(file))) {
      throw new Error(
        `the prolong binary serves an outdated ${file} at ${path} (the demo files are embedded at compile time): rebuild it with \`cargo build -p prolong-server\``,
      )
    }
    const csp = res.headers.get('content-security-policy') ?? ''
    if (!csp.includes("script-src 'self'")) throw new Error(`GET ${path} has no strict Content-Security-Policy: "${csp}"`)
  }
  return { url: server.baseUrl, close: async () => {} }
}

/** Starts a prolong server with `settings` and resolves to { url, server, stop() }. */
export async function startDemo(settings, users = ['alice']) {
  const server = await startServer({ settings, users })
  let origin
  try {
    origin = await pageOrigin(server)
  } catch (err) {
    await server.stop()
    throw err
  }
  return {
    url: origin.url,
    server,
    stop: async () => {
      await origin.close()
      await server.stop()
    },
  }
}

/**
 * Watches a page: its token-endpoint answers (with the reason of any failure), page errors and
 * CSP violations, so that tests can assert on what the server really said.
 */
export function watch(page, name, into = { token: [], problems: [] }) {
  page.on('response', async (res) => {
    const path = new URL(res.url()).pathname
    if (path !== '/oauth/token' && path !== '/v1/renew' && res.status() !== 401) return
    let body = null
    try {
      body = await res.json()
    } catch {
      // not JSON, or the page went away
    }
    into.token.push({
      page: name,
      path,
      status: res.status(),
      error: body?.error,
      reason: body?.reason,
      refreshToken: body?.refresh_token,
      at: Date.now(),
    })
  })
  page.on('pageerror', (err) => into.problems.push(`${name}: page error: ${err.message}`))
  page.on('console', (msg) => {
    // HTTP errors the client handles (a 401 it absorbs, the 400 that signs it out) are logged by
    // Chromium as "Failed to load resource"; anything else (a CSP violation, an exception) counts.
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) {
      into.problems.push(`${name}: console error: ${msg.text()}`)
    }
  })
  return into
}

export async function signIn(page, username = 'alice', password = PASSWORD) {
  await page.fill('#username', username)
  await page.fill('#password', password)
  await page.click('#login-button')
  await page.waitForSelector('body[data-state="signed-in"]', { timeout: 10_000 })
}

/** What a person does: moves the mouse somewhere and presses a harmless key. */
export async function beActive(page) {
  await page.mouse.move(100 + Math.random() * 600, 100 + Math.random() * 400)
  await page.keyboard.press('Shift')
}

/** Clicks "GET /v1/me" and resolves to the status the page shows for this call. */
export async function callMe(page) {
  const before = await page.textContent('#me-status')
  await page.click('#me-button')
  await page.waitForFunction((prev) => document.getElementById('me-status').textContent !== prev, before, { timeout: 10_000 })
  return page.getAttribute('#me-status', 'data-status')
}

export async function refreshEntries(page) {
  return page.$$eval('[data-testid="refresh-entry"]', (els) => els.map((e) => e.dataset.source))
}

export async function screenshot(page, name) {
  await mkdir(artifacts, { recursive: true })
  const path = resolve(artifacts, name)
  await page.screenshot({ path, fullPage: true })
  return path
}
