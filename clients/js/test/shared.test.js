// Two session objects sharing one storage (two tabs of a browser, in Node): they refresh in
// turn, never both with the same refresh token after the grace, and the server never answers
// reuse_detected — with the lock, and without one (browsers lacking Web Locks), where the stored
// token check and the server's reuse grace keep it safe.

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import { MemoryStorage, createSession } from '../prolong.js'
import { PASSWORD, recordingFetch, sleep, startServer } from './support.js'

let server
before(async () => {
  server = await startServer({
    settings: { tokens: { access_ttl: '2s' }, session: { reuse_grace: '1s', idle_timeout: '30s', absolute_lifetime: '1h' } },
  })
})
after(() => server?.stop())

async function twoTabs(t, { lock } = {}) {
  const storage = new MemoryStorage()
  const rec = recordingFetch()
  const opts = { baseUrl: server.baseUrl, storage, fetch: rec.fetch, ...(lock ? { lock } : {}) }
  const a = createSession(opts)
  const b = createSession(opts)
  const out = []
  a.onSignedOut((r) => out.push(`a:${r}`))
  b.onSignedOut((r) => out.push(`b:${r}`))
  const sources = { a: [], b: [] }
  a.onRefresh((i) => sources.a.push(i.source))
  b.onRefresh((i) => sources.b.push(i.source))
  try {
    await a.login('alice', PASSWORD)
    await sleep(5)
    assert.equal(b.sessionId, a.sessionId, 'the second tab picked up the session')

    // Both use the API continuously and now and then force a refresh at the same instant.
    const deadline = Date.now() + 10_000 // five lifetimes
    const use = async (s, name) => {
      let n = 0
      while (Date.now() < deadline) {
        s.touch()
        const res = await s.fetch('/v1/me')
        if (res.status !== 200) assert.fail(`${name}: GET /v1/me answered ${res.status}`)
        if (++n % 15 === 0) await Promise.all([a.refresh(), b.refresh()])
        await sleep(40 + Math.random() * 60)
      }
    }
    await Promise.all([use(a, 'a'), use(b, 'b')])

    const tokenCalls = rec.events.filter((e) => e.path === '/oauth/token')
    const reuse = rec.events.filter((e) => e.reason === 'reuse_detected')
    t.diagnostic(
      `${tokenCalls.length} token requests; a: ${sources.a.filter((s) => s === 'refresh').length} own refreshes, ${sources.a.filter((s) => s === 'shared').length} adopted; ` +
        `b: ${sources.b.filter((s) => s === 'refresh').length} own, ${sources.b.filter((s) => s === 'shared').length} adopted`,
    )
    assert.deepEqual(reuse, [])
    assert.deepEqual(out, [])
    assert.equal(a.signedIn && b.signedIn, true)
    assert.equal(a.accessToken, b.accessToken, 'both tabs end on the same token')
    assert.ok(tokenCalls.every((e) => e.status === 200), JSON.stringify(tokenCalls.filter((e) => e.status !== 200)))
    assert.ok(sources.a.includes('shared') && sources.b.includes('shared'), 'each tab adopted refreshes made by the other')
    // the session is still alive on the server
    await a.refresh()
    const me = await (await b.fetch('/v1/me')).json()
    assert.equal(me.session_id, a.sessionId)
    return { tokenCalls }
  } finally {
    a.close()
    b.close()
  }
}

describe('two session objects sharing one storage', () => {
  test('with the default (in-process) lock: one refreshes, the other adopts', async (t) => {
    const { tokenCalls } = await twoTabs(t)
    // Never two requests with the same refresh token (the server would then answer both with the
    // same new one, within its grace): every answer carries a refresh token seen only once.
    const issued = tokenCalls.map((e) => e.refreshToken)
    assert.equal(new Set(issued).size, issued.length, 'two requests used the same refresh token')
  })

  test('without any lock (no Web Locks): the stored-token check and the reuse grace keep it safe', async (t) => {
    await twoTabs(t, { lock: (_name, fn) => fn() })
  })
})
