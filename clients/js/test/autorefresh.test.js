// autorefresh: the call shapes and argument errors of the npm package jwt-autorefresh, its
// scheduling, and its README example run against a real prolong server.

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import autorefreshDefault, { autorefresh, decodeJwt, refreshLead } from '../prolong.js'
import { PASSWORD, sleep, startServer } from './support.js'

const b64url = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url')
const fakeJwt = (claims) => `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(claims)}.c2ln`
const nowS = () => Date.now() / 1000
const tokenFor = (seconds, extra = {}) => {
  const iat = nowS()
  return fakeJwt({ iat, exp: iat + seconds, ...extra })
}
const noop = () => Promise.resolve(tokenFor(100))

function throwsCode(fn, code, pattern) {
  assert.throws(fn, (err) => {
    assert.equal(err.code, code, `expected code ${code}, got ${err.code}: ${err.message}`)
    if (pattern) assert.match(err.message, pattern)
    return true
  })
}

describe('autorefresh call shapes', () => {
  test('is the default export and a named export, and returns a start function', () => {
    assert.equal(autorefreshDefault, autorefresh)
    assert.equal(typeof autorefresh, 'function')
    const start = autorefresh({ refresh: noop, leadSeconds: 10 })
    assert.equal(typeof start, 'function')
    const start2 = autorefresh({ refresh: noop, leadSeconds: () => 10 })
    assert.equal(typeof start2, 'function')
  })

  test('start returns a cancel function that returns a falsy value', () => {
    const start = autorefresh({ refresh: noop, leadSeconds: 10 })
    const cancel = start(tokenFor(100))
    assert.equal(typeof cancel, 'function')
    assert.ok(!cancel())
    assert.ok(!cancel(), 'cancel is idempotent')
  })

  test('bad options throw descriptive errors', () => {
    throwsCode(() => autorefresh(), 'INVALID_OPTIONS', /options object/)
    throwsCode(() => autorefresh(null), 'INVALID_OPTIONS')
    throwsCode(() => autorefresh({ leadSeconds: 10 }), 'INVALID_REFRESH', /requires a refresh function/)
    throwsCode(() => autorefresh({ refresh: 'nope', leadSeconds: 10 }), 'INVALID_REFRESH', /must be a function/)
    throwsCode(() => autorefresh({ refresh: noop }), 'INVALID_LEAD', /requires a leadSeconds/)
    throwsCode(() => autorefresh({ refresh: noop, leadSeconds: '60' }), 'INVALID_LEAD', /number or a function/)
    throwsCode(() => autorefresh({ refresh: noop, leadSeconds: 0 }), 'INVALID_LEAD', /positive number/)
    throwsCode(() => autorefresh({ refresh: noop, leadSeconds: -10 }), 'INVALID_LEAD', /positive number/)
    throwsCode(() => autorefresh({ refresh: noop, leadSeconds: Number.NaN }), 'INVALID_LEAD')
    throwsCode(() => autorefresh({ refresh: noop, leadSeconds: 10, onError: 5 }), 'INVALID_OPTIONS')
  })

  test('start with a bad token throws descriptive errors', () => {
    const start = autorefresh({ refresh: noop, leadSeconds: 10 })
    throwsCode(() => start(), 'INVALID_JWT', /expects an access_token/)
    throwsCode(() => start(42), 'INVALID_JWT', /should be a string/)
    throwsCode(() => start('not-a-jwt'), 'INVALID_JWT', /not a valid format/)
    throwsCode(() => start('a.%%%.c'), 'INVALID_JWT', /not a valid format/)
    throwsCode(() => start(fakeJwt({ sub: 'x' })), 'MISSING_EXP', /"exp" standard claim/)
    throwsCode(() => start(fakeJwt({ exp: 'soon' })), 'INVALID_EXP')
    throwsCode(() => start(fakeJwt({ exp: Date.now() + 100_000 })), 'INVALID_EXP', /milliseconds/)
    const n = nowS()
    throwsCode(() => start(fakeJwt({ nbf: n, exp: n - 100 })), 'INVALID_NBF', /less than "exp"/)
  })

  test('bad lead seconds throw at start', () => {
    throwsCode(() => autorefresh({ refresh: noop, leadSeconds: () => -1 })(tokenFor(100)), 'INVALID_LEAD', /positive/)
    throwsCode(() => autorefresh({ refresh: noop, leadSeconds: () => '5' })(tokenFor(100)), 'INVALID_LEAD', /must return a number/)
  })

  test('a lead not shorter than the token lifetime is refused', () => {
    const start = autorefresh({ refresh: noop, leadSeconds: 60 })
    throwsCode(() => start(tokenFor(30)), 'LEAD_TOO_LONG', /must be less than the token lifetime \(exp - iat = 30 s\)/)
    throwsCode(() => start(tokenFor(60)), 'LEAD_TOO_LONG')
    start(tokenFor(61))() // just longer: fine
  })

  test('a refresh that throws at start (token already due) throws to the caller', () => {
    const start = autorefresh({
      refresh: () => {
        throw new Error('BAD REFRESH')
      },
      leadSeconds: 10,
    })
    const n = nowS()
    assert.throws(() => start(fakeJwt({ nbf: n, exp: n + 1 })), /BAD REFRESH/)
  })
})

describe('autorefresh scheduling', () => {
  test('refreshes lead seconds before exp, then again from the new token, until cancelled', async () => {
    const calls = []
    const refresh = () => {
      calls.push(Date.now())
      return Promise.resolve(tokenFor(1.2))
    }
    const t0 = Date.now()
    const cancel = autorefresh({ refresh, leadSeconds: 0.8 })(tokenFor(1.2))
    await sleep(1500)
    cancel()
    const n = calls.length
    // refreshes at 0.4 s, 0.8 s, 1.2 s (each 0.8 s before a 1.2 s token's exp)
    assert.ok(n >= 3 && n <= 4, `expected 3-4 refreshes, got ${n}`)
    assert.ok(calls[0] - t0 >= 300 && calls[0] - t0 <= 700, `first refresh after ${calls[0] - t0} ms`)
    await sleep(600)
    assert.equal(calls.length, n, 'no refresh after cancel')
  })

  test('a synchronous string result is accepted, and leadSeconds functions are called per scheduling', async () => {
    let leads = 0
    let calls = 0
    const cancel = autorefresh({
      refresh: () => {
        calls++
        return tokenFor(1)
      },
      leadSeconds: () => {
        leads++
        return 0.7
      },
    })(tokenFor(1))
    await sleep(800)
    cancel()
    assert.ok(calls >= 2, `refresh called ${calls} times`)
    assert.ok(leads >= calls, 'leadSeconds evaluated for each token')
  })

  test('an already expired token is refreshed at once', async () => {
    let calls = 0
    const n = nowS()
    const cancel = autorefresh({
      refresh: async () => {
        calls++
        return tokenFor(100)
      },
      leadSeconds: 10,
    })(fakeJwt({ iat: n - 200, exp: n - 100 }))
    await sleep(20)
    cancel()
    assert.equal(calls, 1)
  })

  test('a rejected refresh goes to onError (no unhandled rejection) and stops the schedule', async () => {
    const errors = []
    let calls = 0
    const cancel = autorefresh({
      refresh: async () => {
        calls++
        throw new Error('network down')
      },
      leadSeconds: 0.9,
      onError: (e) => errors.push(e),
    })(tokenFor(1))
    await sleep(400)
    cancel()
    assert.equal(calls, 1)
    assert.equal(errors.length, 1)
    assert.match(errors[0].message, /network down/)
  })

  test('a refreshed token already due is reported instead of refreshing in a loop', async () => {
    const errors = []
    let calls = 0
    const n = nowS()
    autorefresh({
      refresh: async () => {
        calls++
        return fakeJwt({ exp: nowS() + 2 }) // no iat: lifetime unknown, 2 s < lead
      },
      leadSeconds: 5,
      onError: (e) => errors.push(e),
    })(fakeJwt({ iat: n, exp: n + 5.3 }))
    await sleep(600)
    assert.equal(calls, 1)
    assert.equal(errors.length, 1)
    assert.equal(errors[0].code, 'LEAD_TOO_LONG')
  })

  test('refresh must return a token or a promise of one', async () => {
    const errors = []
    const n = nowS()
    assert.throws(
      () => autorefresh({ refresh: () => 42, leadSeconds: 1 })(fakeJwt({ iat: n - 10, exp: n })),
      (e) => e.code === 'INVALID_REFRESH_RESULT',
    )
    autorefresh({ refresh: async () => ({ token: 'x' }), leadSeconds: 1, onError: (e) => errors.push(e) })(fakeJwt({ iat: n - 10, exp: n }))
    await sleep(20)
    assert.equal(errors[0]?.code, 'INVALID_REFRESH_RESULT')
  })

  test('refreshLead: 60-90 s for long tokens, never more than half of a short one', () => {
    for (let i = 0; i < 200; i++) {
      const long = refreshLead(900, 60, 30)
      assert.ok(long >= 60 && long <= 90, `lead ${long}`)
      const short = refreshLead(3, 60, 30)
      assert.ok(short <= 1.5 && short >= 1.2, `lead ${short} for a 3 s token`)
    }
    assert.equal(refreshLead(3, 60, 30, () => 0), 1.5)
  })
})

describe('autorefresh README example against a real prolong server', () => {
  let server
  before(async () => {
    server = await startServer({
      settings: { tokens: { access_ttl: '2s' }, session: { reuse_grace: '1s', idle_timeout: '30s', absolute_lifetime: '1h' } },
    })
  })
  after(() => server?.stop())

  test('the README code keeps a token fresh across several lifetimes', async () => {
    // The browser globals the README relies on, for Node: a localStorage used through properties,
    // and a fetch that resolves '/oauth/token' against the server.
    const localStorage = {}
    const fetch = (path, init) => globalThis.fetch(new URL(path, server.baseUrl), init)

    // --- from the jwt-autorefresh README (only the lead is scaled to 2-second tokens) ---
    const refresh = () => {
      const init = {
        method: 'POST',
        headers: { 'Content-Type': `application/x-www-form-urlencoded` },
        body: `refresh_token=${localStorage.refresh_token}&grant_type=refresh_token`,
      }
      return fetch('/oauth/token', init)
        .then((res) => res.json())
        .then(({ token_type, access_token, expires_in, refresh_token }) => {
          localStorage.access_token = access_token
          localStorage.refresh_token = refresh_token
          return access_token
        })
    }
    const leadSeconds = () => {
      const jitter = Math.random() * 0.2
      return 0.5 + jitter
    }
    const start = autorefresh({ refresh, leadSeconds })
    let cancel = () => {}
    const onAuthorize = (access_token) => {
      cancel()
      cancel = start(access_token)
    }
    const onDeauthorize = () => cancel()
    // --- end of README code ---

    const login = await fetch('/oauth/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'password', username: 'alice', password: PASSWORD }),
    }).then((r) => r.json())
    localStorage.access_token = login.access_token
    localStorage.refresh_token = login.refresh_token
    onAuthorize(login.access_token)

    const seen = new Set([login.access_token])
    const deadline = Date.now() + 7000
    while (Date.now() < deadline) {
      await sleep(500)
      const res = await fetch('/v1/me', { headers: { Authorization: `Bearer ${localStorage.access_token}` } })
      if (res.status !== 200) assert.fail(`GET /v1/me answered ${res.status}: ${await res.text()}`)
      seen.add(localStorage.access_token)
    }
    onDeauthorize()
    assert.ok(seen.size >= 4, `expected at least 4 distinct access tokens over 7 s of 2 s tokens, saw ${seen.size}`)
    const claims = decodeJwt(localStorage.access_token)
    assert.equal(claims.exp - claims.iat, 2)
  })
})
