// createSession against a real prolong server: continuous use across many access-token lifetimes,
// login errors, the 401 retry, logout and logout-everywhere with typed reasons.

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import { MemoryStorage, ProlongError, createSession, decodeJwt } from '../prolong.js'
import { PASSWORD, recordingFetch, sleep, startServer } from './support.js'

const SETTINGS = {
  tokens: { access_ttl: '2s' },
  session: { reuse_grace: '1s', idle_timeout: '30s', absolute_lifetime: '1h' },
}

describe('createSession against a real server (access_ttl 2s)', () => {
  let server
  const open = []
  const session = (opts = {}) => {
    const s = createSession({ baseUrl: server.baseUrl, ...opts })
    open.push(s)
    return s
  }
  before(async () => {
    server = await startServer({ settings: SETTINGS, users: ['alice', 'bob'] })
  })
  after(async () => {
    for (const s of open) s.close()
    await server?.stop()
  })

  test('12 access lifetimes of continuous session.fetch("/v1/me") without a 401 reaching the caller', async (t) => {
    const rec = recordingFetch()
    const s = session({ fetch: rec.fetch })
    const refreshes = []
    s.onRefresh((info) => refreshes.push(info))
    const signedOut = []
    s.onSignedOut((r) => signedOut.push(r))

    const login = await s.login('alice', PASSWORD)
    assert.equal(login.source, 'login')
    assert.equal(s.signedIn, true)
    assert.equal(s.mode, 'refresh')
    const sid = s.sessionId

    const lifetimes = 12
    const deadline = Date.now() + lifetimes * 2000
    let calls = 0
    const tokens = new Set()
    while (Date.now() < deadline) {
      s.touch()
      const res = await s.fetch('/v1/me')
      if (res.status !== 200) assert.fail(`call ${calls} got ${res.status}: ${await res.text()}`)
      const me = await res.json()
      assert.equal(me.username, 'alice')
      assert.equal(me.session_id, sid)
      tokens.add(s.accessToken)
      calls++
      await sleep(50 + Math.random() * 100)
    }
    const serverRejected = rec.events.filter((e) => e.status === 401).length
    t.diagnostic(`${calls} calls, ${refreshes.length} silent refreshes, ${tokens.size} access tokens, ${serverRejected} 401s absorbed by the client`)
    assert.deepEqual(signedOut, [])
    assert.ok(refreshes.length >= lifetimes, `expected >= ${lifetimes} refreshes, got ${refreshes.length}`)
    assert.ok(refreshes.every((r) => r.source === 'refresh' && r.sessionId === sid))
    assert.ok(refreshes.every((r) => r.idle <= 1), 'an active user reports idle 0-1 s')
    // the schedule refreshes at about half the lifetime, so the API almost never sees an expired token
    assert.ok(serverRejected <= 2, `${serverRejected} requests with an expired token`)
    assert.equal(rec.events.filter((e) => e.reason === 'reuse_detected').length, 0)
  })

  test('login errors carry the server reason; fetch refuses when signed out or to other origins', async () => {
    const s = session({ storage: new MemoryStorage() })
    await assert.rejects(s.login('alice', 'wrong password!'), (e) => {
      assert.ok(e instanceof ProlongError)
      assert.equal(e.code, 'invalid_grant')
      assert.equal(e.reason, 'bad_credentials')
      assert.equal(e.status, 400)
      return true
    })
    await assert.rejects(s.login('nobody', PASSWORD), (e) => e.reason === 'bad_credentials')
    assert.equal(s.signedIn, false)
    await assert.rejects(s.fetch('/v1/me'), (e) => e.code === 'signed_out')
    await s.login('alice', PASSWORD)
    await assert.rejects(s.fetch('https://elsewhere.example/v1/me'), /refusing to send the access token/)
    const ok = await s.fetch(new Request(new URL('/v1/me', server.baseUrl)))
    assert.equal(ok.status, 200)
  })

  test('a 401 token_expired is absorbed: refresh once, retry once', async () => {
    const storage = new MemoryStorage()
    const s1 = session({ storage })
    await s1.login('alice', PASSWORD)
    s1.close() // no timers: let the access token expire
    await sleep(2200)
    // Make the client believe the expired token is still good, so the API has to say so.
    const stored = JSON.parse(storage.getItem('prolong'))
    stored.tokens.exp += 3600
    storage.setItem('prolong', JSON.stringify(stored))

    const rec = recordingFetch()
    const s2 = session({ storage, fetch: rec.fetch })
    assert.equal(s2.signedIn, true)
    const before = s2.accessToken
    const res = await s2.fetch('/v1/me', { headers: { Accept: 'application/json' } })
    assert.equal(res.status, 200)
    assert.notEqual(s2.accessToken, before)
    assert.deepEqual(
      rec.events.map((e) => [e.path, e.status, e.error ?? null]),
      [
        ['/v1/me', 401, 'token_expired'],
        ['/oauth/token', 200, null],
      ],
    )
  })

  test('logout ends the session for every object sharing the storage, with reason "logout"', async () => {
    const storage = new MemoryStorage()
    const a = session({ storage })
    const b = session({ storage })
    const reasons = { a: [], b: [] }
    a.onSignedOut((r) => reasons.a.push(r))
    b.onSignedOut((r) => reasons.b.push(r))
    const signedIn = []
    b.onSignedIn((info) => signedIn.push(info))
    await a.login('alice', PASSWORD)
    await sleep(10)
    assert.equal(b.signedIn, true, 'the other object picked up the login')
    assert.equal(signedIn.length, 1)
    const refreshToken = JSON.parse(storage.getItem('prolong')).tokens.refreshToken

    await a.logout()
    await sleep(10)
    assert.deepEqual(reasons, { a: ['logout'], b: ['logout'] })
    assert.equal(b.signedIn, false)
    assert.equal(b.signedOutReason, 'logout')
    await assert.rejects(b.fetch('/v1/me'), (e) => e.code === 'signed_out' && e.reason === 'logout')
    // and on the server the session is gone
    const res = await fetch(new URL('/oauth/token', server.baseUrl), {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }),
    })
    assert.equal(res.status, 400)
    assert.equal((await res.json()).reason, 'revoked')
  })

  test('logout everywhere: this device says "logout_all", another device is told "version_mismatch"', async () => {
    const rec = recordingFetch()
    const phone = session({ storage: new MemoryStorage(), fetch: rec.fetch })
    const laptop = session({ storage: new MemoryStorage() })
    await phone.login('bob', PASSWORD)
    await laptop.login('bob', PASSWORD)
    const phoneReasons = []
    const laptopReasons = []
    phone.onSignedOut((r) => phoneReasons.push(r))
    laptop.onSignedOut((r) => laptopReasons.push(r))

    await laptop.logoutEverywhere()
    assert.deepEqual(laptopReasons, ['logout_all'])
    await assert.rejects(phone.refresh(), (e) => e.code === 'signed_out' && e.reason === 'version_mismatch')
    assert.deepEqual(phoneReasons, ['version_mismatch'])
    // no retry loop after the sign-out
    const seen = rec.events.length
    await sleep(2500)
    assert.equal(rec.events.length, seen)
    await assert.rejects(phone.fetch('/v1/me'), (e) => e.reason === 'version_mismatch')
    assert.equal(rec.events.length, seen)
    assert.equal(phone.signedIn, false)
  })

  test('a session ended from another device: the next call signs out with "revoked"', async () => {
    const mine = session({ storage: new MemoryStorage() })
    const other = session({ storage: new MemoryStorage() })
    await mine.login('alice', PASSWORD)
    await other.login('alice', PASSWORD)
    const list = await (await other.fetch('/v1/sessions')).json()
    const target = list.find((x) => x.id === mine.sessionId)
    assert.ok(target, 'the other session is listed')
    assert.equal(target.current, false)
    assert.equal(list.find((x) => x.id === other.sessionId)?.current, true)
    const del = await other.fetch(`/v1/sessions/${mine.sessionId}`, { method: 'DELETE' })
    assert.equal(del.status, 204)

    const reasons = []
    mine.onSignedOut((r) => reasons.push(r))
    // Its access token may still be accepted until exp; the refresh is refused for sure.
    await assert.rejects(
      (async () => {
        for (let i = 0; i < 30; i++) {
          const res = await mine.fetch('/v1/me')
          if (res.status !== 200) return res
          await sleep(100)
        }
      })(),
      (e) => e.code === 'signed_out' && e.reason === 'revoked',
    )
    assert.deepEqual(reasons, ['revoked'])
    assert.equal(decodeJwt(other.accessToken).sid, other.sessionId)
  })
})
