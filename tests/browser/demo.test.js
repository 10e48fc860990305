// The demo page in Debian's Chromium against a real prolong server with 3-second access tokens:
// an active page stays signed in, an idle one is signed out with the reason shown, two tabs share
// one session without the server ever seeing a reused refresh token, and sessions can be ended.

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import { beActive, callMe, launchBrowser, refreshEntries, screenshot, signIn, sleep, startDemo, watch } from './support.js'

const LIFETIME_MS = 3000
const settings = (idleTimeout) => ({
  tokens: { access_ttl: '3s' },
  session: { reuse_grace: '1s', idle_timeout: idleTimeout, absolute_lifetime: '1h' },
})

describe('the demo page', () => {
  let browser
  before(async () => {
    browser = await launchBrowser()
  })
  after(() => browser?.close())

  test('an active page keeps working across 6 token lifetimes with no sign-in prompt', async (t) => {
    // idle_timeout 6s: the session survives 18 s only because the page reports the user's activity
    const demo = await startDemo(settings('6s'))
    const context = await browser.newContext({ viewport: { width: 1280, height: 960 } })
    try {
      const page = await context.newPage()
      const seen = watch(page, 'page')
      await page.goto(`${demo.url}/`)
      await page.waitForSelector('#login-panel:not([hidden])')
      await signIn(page)

      const deadline = Date.now() + 6 * LIFETIME_MS
      let calls = 0
      while (Date.now() < deadline) {
        await beActive(page)
        assert.equal(await callMe(page), '200', `GET /v1/me failed on call ${calls + 1}`)
        assert.equal(await page.isVisible('#login-panel'), false, 'the sign-in form came back')
        calls++
        await sleep(300)
      }
      const entries = await refreshEntries(page)
      const remaining = await page.textContent('#token-remaining')
      t.diagnostic(`${calls} calls to /v1/me, ${entries.length} silent refreshes, token shows ${remaining}`)
      assert.ok(entries.length >= 6, `expected at least 6 silent refreshes, saw ${entries.length}`)
      assert.match(remaining, /^\d+\.\d s$/)
      assert.equal(await page.textContent('#whoami'), 'alice')
      assert.deepEqual(
        seen.token.filter((e) => e.path === '/oauth/token' && e.status !== 200),
        [],
        'every token request succeeded',
      )
      assert.deepEqual(seen.problems, [])

      // A screenshot of the signed-in page for people to look at.
      await page.click('#sessions-reload')
      await page.waitForSelector('[data-testid="session-item"]')
      await page.mouse.move(5, 5)
      await screenshot(page, 'demo.png')
    } finally {
      await context.close()
      await demo.stop()
    }
  })

  test('an idle page is signed out by the server and shows "signed out (expired_idle)"', async (t) => {
    const demo = await startDemo(settings('5s'))
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
    try {
      const page = await context.newPage()
      const seen = watch(page, 'page')
      await page.goto(`${demo.url}/`)
      await signIn(page)
      const t0 = Date.now()
      // no input from now on
      await page.waitForSelector('#signed-out:not([hidden])', { timeout: 20_000 })
      const after = Date.now() - t0
      t.diagnostic(`signed out ${after} ms after the last input`)
      assert.ok(after >= 5000, `signed out after ${after} ms, before the 5 s idle timeout`)
      assert.equal(await page.textContent('#signed-out-reason'), 'expired_idle')
      assert.equal(await page.textContent('#status'), 'signed out (expired_idle)')
      assert.equal(await page.isVisible('#login-panel'), true)
      assert.equal(await page.isVisible('#app'), false)
      const failures = seen.token.filter((e) => e.status !== 200 && e.path === '/oauth/token')
      assert.deepEqual(
        failures.map((e) => e.reason),
        ['expired_idle'],
      )
      // no retry loop once signed out
      const count = seen.token.length
      await sleep(2 * LIFETIME_MS)
      assert.equal(seen.token.length, count)
      assert.deepEqual(seen.problems, [])
      await screenshot(page, 'demo-signed-out.png')
    } finally {
      await context.close()
      await demo.stop()
    }
  })

  // Two tabs of one browser on one session, both used for `lifetimes` token lifetimes.
  async function twoTabs(t, { lifetimes, withoutLocks }) {
    const demo = await startDemo(settings('30s'))
    const context = await browser.newContext({ viewport: { width: 1100, height: 800 } })
    if (withoutLocks) {
      // a browser without Web Locks and BroadcastChannel: only `storage` events connect the tabs
      await context.addInitScript(() => {
        Object.defineProperty(Navigator.prototype, 'locks', { value: undefined, configurable: true })
        Object.defineProperty(window, 'BroadcastChannel', { value: undefined, configurable: true })
      })
    }
    try {
      const seen = { token: [], problems: [] }
      const one = await context.newPage()
      watch(one, 'tab1', seen)
      await one.goto(`${demo.url}/`)
      if (withoutLocks) assert.equal(await one.evaluate(() => !navigator.locks && !window.BroadcastChannel), true)
      await signIn(one)
      const two = await context.newPage()
      watch(two, 'tab2', seen)
      await two.goto(`${demo.url}/`)
      await two.waitForSelector('body[data-state="signed-in"]', { timeout: 10_000 })
      const sid = await one.textContent('#session-id')
      assert.equal(await two.textContent('#session-id'), sid, 'the second tab opened on the same session')

      const deadline = Date.now() + lifetimes * LIFETIME_MS
      let round = 0
      while (Date.now() < deadline) {
        const page = round++ % 2 ? two : one
        await beActive(page)
        assert.equal(await callMe(page), '200', `GET /v1/me failed in ${page === one ? 'tab 1' : 'tab 2'}`)
        await sleep(250)
      }

      for (const page of [one, two]) {
        assert.equal(await page.getAttribute('body', 'data-state'), 'signed-in')
        assert.equal(await page.textContent('#session-id'), sid)
        assert.equal(await callMe(page), '200')
        const me = JSON.parse(await page.textContent('#me-result'))
        assert.equal(me.session_id, sid)
      }
      const e1 = await refreshEntries(one)
      const e2 = await refreshEntries(two)
      const own = (e) => e.filter((s) => s === 'refresh').length
      const shared = (e) => e.filter((s) => s === 'shared').length
      const refreshes = seen.token.filter((e) => e.path === '/oauth/token').length - 1 // minus the login
      t.diagnostic(
        `${refreshes} refresh requests; tab 1 log: ${own(e1)} own, ${shared(e1)} from tab 2; tab 2 log: ${own(e2)} own, ${shared(e2)} from tab 1`,
      )
      assert.deepEqual(seen.token.filter((e) => e.reason === 'reuse_detected'), [])
      assert.deepEqual(seen.token.filter((e) => e.path === '/oauth/token' && e.status !== 200), [])
      assert.ok(shared(e1) > 0 && shared(e2) > 0, 'each tab received refreshes made by the other')
      assert.ok(e1.length >= lifetimes && e2.length >= lifetimes)
      assert.equal(await one.locator('[data-testid="signout-entry"]').count(), 0)
      assert.equal(await two.locator('[data-testid="signout-entry"]').count(), 0)
      // the browser holds exactly one session on the server
      await one.click('#sessions-reload')
      await one.waitForSelector('[data-testid="session-item"]')
      assert.equal(await one.locator('[data-testid="session-item"]').count(), 1)
      assert.deepEqual(seen.problems, [])
      return { seen, e1, e2, refreshes, own, shared }
    } finally {
      await context.close()
      await demo.stop()
    }
  }

  test('two tabs share one session for 6 lifetimes; the server never answers reuse_detected', async (t) => {
    const { seen, e1, e2, refreshes, own, shared } = await twoTabs(t, { lifetimes: 6 })
    // One refresh for the browser, not one per tab: every request shows up as its own refresh in
    // one tab and as received in the other, and no two requests spent the same refresh token
    // (the server would have answered both with the same new one, within its grace).
    assert.equal(own(e1) + own(e2), refreshes)
    assert.ok(shared(e1) >= own(e2) - 1 && shared(e2) >= own(e1) - 1, 'each refresh reached the other tab')
    const issued = seen.token.filter((e) => e.path === '/oauth/token').map((e) => e.refreshToken)
    assert.equal(new Set(issued).size, issued.length, 'two tabs refreshed with the same refresh token')
  })

  test('without Web Locks and BroadcastChannel, storage events keep two tabs on one session', async (t) => {
    await twoTabs(t, { lifetimes: 5, withoutLocks: true })
  })

  test('ending another device\'s session and logging out everywhere, with the reasons shown', async () => {
    const demo = await startDemo(settings('30s'))
    const laptop = await browser.newContext()
    const phone = await browser.newContext()
    try {
      const seen = { token: [], problems: [] }
      const laptopTab = await laptop.newPage()
      const phoneTab = await phone.newPage()
      watch(laptopTab, 'laptop', seen)
      watch(phoneTab, 'phone', seen)
      await laptopTab.goto(`${demo.url}/`)
      await signIn(laptopTab)
      await phoneTab.goto(`${demo.url}/`)
      await signIn(phoneTab)

      // the laptop ends the phone's session; the phone learns it at its next refresh
      await laptopTab.click('#sessions-reload')
      await laptopTab.waitForFunction(() => document.querySelectorAll('[data-testid="session-item"]').length === 2)
      assert.equal(await laptopTab.locator('[data-current="true"] [data-testid="end-session"]').count(), 0, 'no end button for the current session')
      await laptopTab.click('[data-current="false"] [data-testid="end-session"]')
      await laptopTab.waitForFunction(() => document.querySelectorAll('[data-testid="session-item"]').length === 1)
      await phoneTab.waitForSelector('#signed-out:not([hidden])', { timeout: 10_000 })
      assert.equal(await phoneTab.textContent('#signed-out-reason'), 'revoked')

      // a second laptop tab, then "log out everywhere": both laptop tabs show it
      const laptopTab2 = await laptop.newPage()
      watch(laptopTab2, 'laptop2', seen)
      await laptopTab2.goto(`${demo.url}/`)
      await laptopTab2.waitForSelector('body[data-state="signed-in"]')
      await laptopTab.click('#logout-all-button')
      for (const tab of [laptopTab, laptopTab2]) {
        await tab.waitForSelector('#signed-out:not([hidden])', { timeout: 5000 })
        assert.equal(await tab.textContent('#signed-out-reason'), 'logout_all')
      }
      // signing in again in one tab signs in the other
      await signIn(laptopTab2)
      await laptopTab.waitForSelector('body[data-state="signed-in"]', { timeout: 5000 })
      // and "log out" in one tab signs out the other
      await laptopTab.click('#logout-button')
      await laptopTab2.waitForSelector('#signed-out:not([hidden])', { timeout: 5000 })
      assert.equal(await laptopTab2.textContent('#signed-out-reason'), 'logout')
      assert.deepEqual(seen.token.filter((e) => e.reason === 'reuse_detected'), [])
      assert.deepEqual(seen.problems, [])
    } finally {
      await laptop.close()
      await phone.close()
      await demo.stop()
    }
  })
})
