// Idle reporting: a client nobody touches reports a growing idle time and is signed out by the
// server with "expired_idle"; one that is touched stays signed in past the idle timeout.

import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'

import { MemoryStorage, createSession } from '../prolong.js'
import { PASSWORD, recordingFetch, sleep, startServer } from './support.js'

let server
before(async () => {
  server = await startServer({
    settings: { tokens: { access_ttl: '2s' }, session: { reuse_grace: '1s', idle_timeout: '4s', absolute_lifetime: '1h' } },
  })
})
after(() => server?.stop())

test('an idle client is signed out with expired_idle; an active one is not', async (t) => {
  const rec = recordingFetch()
  const idle = createSession({ baseUrl: server.baseUrl, storage: new MemoryStorage(), fetch: rec.fetch })
  const active = createSession({ baseUrl: server.baseUrl, storage: new MemoryStorage() })
  const toggle = setInterval(() => active.touch(), 300)
  try {
    const reported = []
    idle.onRefresh((info) => reported.push(info.idle))
    const signedOut = new Promise((resolve) => idle.onSignedOut(resolve))
    const activeOut = []
    active.onSignedOut((r) => activeOut.push(r))

    await idle.login('alice', PASSWORD)
    await active.login('alice', PASSWORD)
    const t0 = Date.now()

    const timeout = sleep(15_000).then(() => 'timeout')
    const reason = await Promise.race([signedOut, timeout])
    const after = Date.now() - t0
    t.diagnostic(`idle values reported: ${reported.join(', ')}; signed out after ${after} ms`)
    assert.equal(reason, 'expired_idle')
    assert.ok(after >= 4000, `signed out after only ${after} ms with idle_timeout 4s`)
    assert.ok(reported.length >= 2, 'it refreshed while the idle time grew')
    for (let i = 1; i < reported.length; i++) assert.ok(reported[i] >= reported[i - 1], 'idle grows')
    assert.ok(reported.at(-1) >= 2)
    assert.equal(idle.signedIn, false)
    assert.equal(idle.signedOutReason, 'expired_idle')

    // No retry loop: nothing more is sent after the sign-out, and fetch says why.
    const seen = rec.events.length
    await sleep(2500)
    await assert.rejects(idle.fetch('/v1/me'), (e) => e.code === 'signed_out' && e.reason === 'expired_idle')
    assert.equal(rec.events.length, seen)

    // The touched client outlived the idle timeout by far.
    assert.ok(Date.now() - t0 > 6000)
    assert.deepEqual(activeOut, [])
    const me = await active.fetch('/v1/me')
    assert.equal(me.status, 200)
  } finally {
    clearInterval(toggle)
    idle.close()
    active.close()
  }
})
