// Renew mode: no refresh token; the client renews its access token with POST /v1/renew.

import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'

import { MemoryStorage, createSession, decodeJwt } from '../prolong.js'
import { PASSWORD, recordingFetch, sleep, startServer } from './support.js'

let server
before(async () => {
  server = await startServer({
    settings: {
      tokens: { access_ttl: '2s' },
      session: { mode: 'renew', reuse_grace: '1s', idle_timeout: '30s', absolute_lifetime: '1h' },
    },
  })
})
after(() => server?.stop())

test('renew mode keeps the session alive over 4 lifetimes with POST /v1/renew, and logout ends it', async (t) => {
  const storage = new MemoryStorage()
  const rec = recordingFetch()
  const s = createSession({ baseUrl: server.baseUrl, storage, mode: 'renew', fetch: rec.fetch })
  const other = createSession({ baseUrl: server.baseUrl, storage }) // mode "auto": follows the server
  const renewals = []
  s.onRefresh((info) => renewals.push(info))
  try {
    await s.login('alice', PASSWORD)
    assert.equal(JSON.parse(storage.getItem('prolong')).tokens.refreshToken, null, 'no refresh token in renew mode')
    assert.equal(s.mode, 'renew')
    assert.equal(other.mode, 'renew')
    const firstGen = decodeJwt(s.accessToken).gen
    assert.equal(typeof firstGen, 'number')

    const deadline = Date.now() + 8000
    while (Date.now() < deadline) {
      s.touch()
      const res = await (Date.now() % 2 ? s : other).fetch('/v1/me')
      if (res.status !== 200) assert.fail(`GET /v1/me answered ${res.status}: ${await res.text()}`)
      await sleep(100)
    }
    const own = renewals.filter((r) => r.source === 'renew')
    t.diagnostic(`${own.length} renewals by this object, ${renewals.length - own.length} adopted`)
    assert.ok(renewals.length >= 4)
    assert.ok(rec.events.some((e) => e.path === '/v1/renew' && e.status === 200))
    assert.ok(!rec.events.some((e) => e.path === '/oauth/token' && e.status === 200 && e !== rec.events[0]), 'no refresh-token grant')
    assert.ok(decodeJwt(s.accessToken).gen > firstGen, 'the generation moved on')
    assert.ok(!rec.events.some((e) => e.reason === 'reuse_detected'))

    const token = s.accessToken
    await s.logout()
    assert.equal(other.signedOutReason, 'logout')
    const res = await fetch(new URL('/v1/renew', server.baseUrl), { method: 'POST', headers: { Authorization: `Bearer ${token}` } })
    assert.equal(res.status, 400)
    assert.equal((await res.json()).reason, 'revoked')
  } finally {
    s.close()
    other.close()
  }
})
