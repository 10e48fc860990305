// Prolong client: keeps a user signed in with short-lived access JWTs while they are active, and
// lets them be signed out when they should be. One ES module, no dependencies, for browsers and
// Node >= 20.
//
// Two layers:
// - `autorefresh({ refresh, leadSeconds })`, call-compatible with the npm package jwt-autorefresh:
//   a scheduler that calls your `refresh` some seconds before the access token's `exp`.
// - `createSession({ baseUrl, storage, ... })`, a client for a Prolong server: login, an
//   authenticated `fetch`, silent refresh (or renew), idle reporting, sign-out with the server's
//   reason, and one shared session for every tab of a browser.
//
// The one design decision of the session layer: the storage is the single source of truth. Every
// refresh happens under a lock (Web Locks, or an in-process lock), and inside it a tab first reads
// the stored tokens: when another tab already refreshed, it adopts that result instead of spending
// its own, now stale, refresh token. Notifications (BroadcastChannel, `storage` events) only say
// "look at the storage again", so a missed or duplicated message never loses a token.

const MAX_TIMER_MS = 2 ** 31 - 1 // setTimeout fires at once for longer delays
const REQUEST_TIMEOUT_MS = 10_000 // bounds how long a refresh can hold the cross-tab lock
const MIN_REFRESH_INTERVAL_MS = 100 // never refresh in a tight loop, whatever the clock says
const ACTIVITY_WRITE_INTERVAL_MS = 1000 // how often a tab shares its last user input with others
const STALE_FRACTION = 0.25 // a stored token with less life left than this gets refreshed anyway
const MAX_BACKOFF_MS = 30_000

/** The reasons the server gives when it ends a session (CONTRACT §4). */
export const SERVER_REASONS = Object.freeze([
  'bad_credentials',
  'unknown_token',
  'reuse_detected',
  'revoked',
  'expired_idle',
  'expired_absolute',
  'reauth_required',
  'version_mismatch',
])

// ---------------------------------------------------------------------------------------------
// Errors and JWT decoding
// ---------------------------------------------------------------------------------------------

/** An error from the client or the server, with a machine-readable `code`. */
export class ProlongError extends Error {
  constructor(message, { code = 'error', reason, status, retryAfter, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause })
    this.name = 'ProlongError'
    this.code = code
    if (reason !== undefined) this.reason = reason
    if (status !== undefined) this.status = status
    if (retryAfter !== undefined) this.retryAfter = retryAfter
  }
}

function coded(Ctor, code, message) {
  const err = new Ctor(message)
  err.code = code
  return err
}

function describe(value) {
  if (value === null) return 'null'
  if (typeof value === 'string') return value.length > 40 ? `a string "${value.slice(0, 37)}..."` : `"${value}"`
  if (typeof value === 'number') return String(value)
  return `a value of type ${typeof value}`
}

function base64UrlDecode(segment) {
  if (!/^[A-Za-z0-9_-]*$/.test(segment)) throw new Error('not base64url')
  const b64 = segment.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (segment.length % 4)) % 4)
  const binary = atob(b64)
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return new TextDecoder('utf-8', { fatal: true }).decode(bytes)
}

/**
 * Reads the claims of a JWS compact token without verifying it (the client only needs `exp` and
 * `iat` for scheduling; the server and the APIs verify signatures).
 */
export function decodeJwt(token) {
  if (typeof token !== 'string' || token === '') {
    throw coded(TypeError, 'INVALID_JWT', `expected an access token string, got ${describe(token)}`)
  }
  const parts = token.split('.')
  if (parts.length !== 3 || parts[0] === '' || parts[1] === '') {
    throw coded(TypeError, 'INVALID_JWT', `JWT token was not a valid format (expected three dot-separated parts): ${describe(token)}`)
  }
  let claims
  try {
    claims = JSON.parse(base64UrlDecode(parts[1]))
  } catch (err) {
    throw coded(TypeError, 'INVALID_JWT', `JWT token was not a valid format (the payload is not base64url JSON: ${err.message})`)
  }
  if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) {
    throw coded(TypeError, 'INVALID_JWT', 'JWT token was not a valid format (the payload is not a JSON object)')
  }
  return claims
}

function isNumericDate(v) {
  return typeof v === 'number' && Number.isFinite(v)
}

/**
 * How many seconds before `exp` a session refreshes a token that lives `lifetimeSeconds`:
 * `leadSeconds` plus up to `jitterSeconds` of random jitter, but never more than half the lifetime
 * (jitter then moves the refresh later than the half, by at most a tenth of the lifetime). So a
 * 15-minute token refreshes 60-90 s before it expires and a 3-second one 1.5-1.8 s after it was
 * issued.
 */
export function refreshLead(lifetimeSeconds, leadSeconds = 60, jitterSeconds = 30, random = Math.random) {
  const jitterMax = Math.max(0, Math.min(jitterSeconds, lifetimeSeconds / 10))
  const cap = lifetimeSeconds / 2
  const lead = leadSeconds + random() * jitterMax
  return lead <= cap ? lead : Math.max(0, cap - random() * jitterMax)
}

// ---------------------------------------------------------------------------------------------
// autorefresh: the jwt-autorefresh call shape
// ---------------------------------------------------------------------------------------------

function resolveLead(leadSeconds) {
  let lead = leadSeconds
  if (typeof leadSeconds === 'function') {
    lead = leadSeconds()
    if (typeof lead !== 'number') {
      throw coded(TypeError, 'INVALID_LEAD', `autorefresh leadSeconds function must return a number of seconds, got ${describe(lead)}`)
    }
  }
  if (!Number.isFinite(lead) || lead <= 0) {
    throw coded(RangeError, 'INVALID_LEAD', `autorefresh lead seconds must resolve to a positive number of seconds, got ${describe(lead)}`)
  }
  return lead
}

/**
 * Schedules calls to `refresh` `leadSeconds` before the access token's `exp`, the way the npm
 * package jwt-autorefresh does:
 *
 *     const start = autorefresh({ refresh, leadSeconds })
 *     let cancel = start(accessToken)   // schedules; returns cancel()
 *     cancel()
 *
 * `refresh()` returns the new access token or a promise of it; after it resolves the next refresh
 * is scheduled from the new token. `leadSeconds` is a number or a function returning one (called
 * once per scheduling, e.g. to add jitter). A token whose refresh time has already passed is
 * refreshed at once. Bad arguments throw descriptive errors (with a `code`) synchronously; a
 * failed refresh stops the schedule and is passed to `onError` (or `log.error`, else
 * `console.error`) instead of becoming an unhandled rejection.
 */
export function autorefresh(opts) {
  if (opts === undefined || opts === null || typeof opts !== 'object') {
    throw coded(TypeError, 'INVALID_OPTIONS', `autorefresh requires an options object { refresh, leadSeconds }, got ${describe(opts)}`)
  }
  const { refresh, leadSeconds, log, onError } = opts
  if (refresh === undefined || refresh === null) {
    throw coded(TypeError, 'INVALID_REFRESH', 'autorefresh requires a refresh function parameter')
  }
  if (typeof refresh !== 'function') {
    throw coded(TypeError, 'INVALID_REFRESH', `autorefresh refresh parameter must be a function, got ${describe(refresh)}`)
  }
  if (leadSeconds === undefined || leadSeconds === null) {
    throw coded(TypeError, 'INVALID_LEAD', 'autorefresh requires a leadSeconds number or function returning a number in seconds parameter')
  }
  if (typeof leadSeconds === 'number') resolveLead(leadSeconds)
  else if (typeof leadSeconds !== 'function') {
    throw coded(TypeError, 'INVALID_LEAD', `autorefresh leadSeconds parameter must be a number or a function returning a number, got ${describe(leadSeconds)}`)
  }
  if (onError !== undefined && typeof onError !== 'function') {
    throw coded(TypeError, 'INVALID_OPTIONS', `autorefresh onError must be a function, got ${describe(onError)}`)
  }

  let run = 0 // bumped by every start and cancel: a stale timer or refresh result does nothing
  let timer = null

  const report = (err) => {
    if (onError) onError(err)
    else if (log && typeof log.error === 'function') log.error(err, `autorefresh: ${err.message}`)
    else console.error('autorefresh:', err)
  }

  // Milliseconds until the refresh of `token` is due; `after` names the step for messages.
  const delayFor = (token, after) => {
    if (token === undefined || token === null || token === '') {
      throw coded(TypeError, 'INVALID_JWT', `autorefresh ${after} expects an access_token parameter, got ${describe(token)}`)
    }
    if (typeof token !== 'string') {
      throw coded(TypeError, 'INVALID_JWT', `autorefresh ${after}: access_token should be a string, got ${describe(token)}`)
    }
    const claims = decodeJwt(token)
    const { exp, nbf, iat } = claims
    if (exp === undefined) throw coded(TypeError, 'MISSING_EXP', 'autorefresh requires JWT token with "exp" standard claim')
    if (!isNumericDate(exp)) throw coded(TypeError, 'INVALID_EXP', `"exp" claim must be a NumericDate (seconds), got ${describe(exp)}`)
    if (exp > 1e11) throw coded(RangeError, 'INVALID_EXP', `"exp" claim ${exp} looks like milliseconds; a NumericDate is in seconds`)
    if (nbf !== undefined) {
      if (!isNumericDate(nbf)) throw coded(TypeError, 'INVALID_NBF', `"nbf" claim should be a NumericDate value, got ${describe(nbf)}`)
      if (nbf >= exp) throw coded(RangeError, 'INVALID_NBF', `"nbf" claim (${nbf}) should be less than "exp" claim (${exp})`)
    }
    const lead = resolveLead(leadSeconds)
    if (isNumericDate(iat) && iat < exp && lead >= exp - iat) {
      throw coded(RangeError, 'LEAD_TOO_LONG', `autorefresh leadSeconds (${lead} s) must be less than the token lifetime (exp - iat = ${exp - iat} s); otherwise every new token would be refreshed at once`)
    }
    return { delay: (exp - lead) * 1000 - Date.now(), lead, exp }
  }

  const setTimer = (delay, current, fn) => {
    clearTimeout(timer)
    const step = Math.min(delay, MAX_TIMER_MS)
    timer = setTimeout(() => {
      if (current !== run) return
      if (delay > step) setTimer(delay - step, current, fn)
      else fn()
    }, Math.max(0, step))
  }

  const scheduleNext = (token, current) => {
    const { delay, lead, exp } = delayFor(token, 'refresh result')
    if (delay <= 0) {
      const remaining = (exp - Date.now() / 1000).toFixed(1)
      throw coded(RangeError, 'LEAD_TOO_LONG', `autorefresh: leadSeconds (${lead} s) is not less than the refreshed token's remaining lifetime (${remaining} s); stopping rather than refreshing in a loop`)
    }
    setTimer(delay, current, () => execute(current, false))
  }

  // Calls refresh. At start a synchronous failure throws to the caller, as in jwt-autorefresh;
  // from a timer it is reported.
  const execute = (current, fromStart) => {
    clearTimeout(timer)
    let result
    try {
      result = refresh()
      if (typeof result !== 'string' && (result === null || typeof result !== 'object' || typeof result.then !== 'function')) {
        throw coded(TypeError, 'INVALID_REFRESH_RESULT', `refresh must return the access_token or a promise that resolves to the access_token, got ${describe(result)}`)
      }
    } catch (err) {
      if (fromStart) throw err
      report(err)
      return
    }
    Promise.resolve(result)
      .then((token) => {
        if (current !== run) return
        if (typeof token !== 'string') {
          throw coded(TypeError, 'INVALID_REFRESH_RESULT', `refresh must resolve to the new access_token string, got ${describe(token)}`)
        }
        scheduleNext(token, current)
      })
      .catch((err) => {
        if (current === run) report(err)
      })
  }

  return function start(accessToken) {
    const current = ++run
    clearTimeout(timer)
    const { delay } = delayFor(accessToken, 'start')
    if (delay > 0) setTimer(delay, current, () => execute(current, false))
    else execute(current, true)
    return function cancel() {
      if (current === run) {
        run++
        clearTimeout(timer)
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Storage and coordination helpers
// ---------------------------------------------------------------------------------------------

/** A Web Storage-like map in memory: the default storage outside browsers. */
export class MemoryStorage {
  #map = new Map()
  get length() {
    return this.#map.size
  }
  key(i) {
    return [...this.#map.keys()][i] ?? null
  }
  getItem(key) {
    return this.#map.has(String(key)) ? this.#map.get(String(key)) : null
  }
  setItem(key, value) {
    this.#map.set(String(key), String(value))
  }
  removeItem(key) {
    this.#map.delete(String(key))
  }
  clear() {
    this.#map.clear()
  }
}

// Per storage object and key: the session objects of this JavaScript realm that share it (they
// notify each other directly) and a promise chain used as a lock where Web Locks are missing.
const realmShared = new WeakMap()
function sharedFor(storage, key) {
  let byKey = realmShared.get(storage)
  if (!byKey) realmShared.set(storage, (byKey = new Map()))
  let entry = byKey.get(key)
  if (!entry) byKey.set(key, (entry = { sessions: new Set(), tail: Promise.resolve() }))
  return entry
}

function inRealmLock(entry, fn) {
  const run = entry.tail.then(() => fn())
  entry.tail = run.then(
    () => {},
    () => {},
  )
  return run
}

function defaultStorage() {
  try {
    const ls = globalThis.localStorage
    if (ls && typeof ls.getItem === 'function') {
      const probe = '__prolong_probe__'
      ls.setItem(probe, '1')
      ls.removeItem(probe)
      return ls
    }
  } catch {
    // storage disabled (privacy settings, opaque origin): fall back to memory
  }
  return new MemoryStorage()
}

function unref(timer) {
  if (timer && typeof timer === 'object' && typeof timer.unref === 'function') timer.unref()
  return timer
}

function parseRetryAfter(res) {
  const v = res.headers.get('retry-after')
  if (v === null) return undefined
  const n = Number(v)
  return Number.isFinite(n) ? n : undefined
}

async function readJson(res) {
  try {
    return await res.json()
  } catch {
    return null
  }
}

function timeoutSignal(ms) {
  return typeof AbortSignal !== 'undefined' && typeof AbortSignal.timeout === 'function' ? AbortSignal.timeout(ms) : undefined
}

// The token record kept in storage, built from a token response. `sentAt`/`receivedAt` bracket
// the request in local time and give a clock-skew estimate: the server issued the token during
// second `iat` of its clock, somewhere between the two local instants. A skew is assumed only when
// that is impossible without one, and then the smallest correction that makes it possible.
function recordFrom(body, sentAt, receivedAt) {
  if (!body || typeof body.access_token !== 'string') {
    throw new ProlongError('the token response has no access_token', { code: 'invalid_response' })
  }
  const claims = decodeJwt(body.access_token)
  const exp = claims.exp
  if (!isNumericDate(exp)) throw new ProlongError('the access token has no "exp" claim', { code: 'invalid_response' })
  const expiresIn = isNumericDate(body.expires_in) ? body.expires_in : undefined
  const iat = isNumericDate(claims.iat) ? claims.iat : exp - (expiresIn ?? 0)
  const lo = sentAt - iat * 1000 - 1000
  const hi = receivedAt - iat * 1000
  const skewMs = lo > 0 ? lo : hi < 0 ? hi : 0
  return {
    accessToken: body.access_token,
    refreshToken: typeof body.refresh_token === 'string' ? body.refresh_token : null,
    sessionId: body.session_id ?? claims.sid ?? null,
    exp,
    iat,
    expiresIn: expiresIn ?? exp - iat,
    idleExpiresAt: body.idle_expires_at ?? null,
    sessionExpiresAt: body.session_expires_at ?? null,
    skewMs,
    receivedAt,
  }
}

function expiresAtOf(t) {
  return t.exp * 1000 + t.skewMs
}

function lifetimeOf(t) {
  const l = t.exp - t.iat
  return l > 0 ? l : Math.max(t.expiresIn, 1)
}

function isNewer(a, b) {
  return a.exp > b.exp || (a.exp === b.exp && a.iat > b.iat)
}

// ---------------------------------------------------------------------------------------------
// createSession
// ---------------------------------------------------------------------------------------------

const BROWSER_ACTIVITY_EVENTS = ['pointerdown', 'pointermove', 'mousemove', 'keydown', 'wheel', 'touchstart', 'scroll']

/** Creates a session client for a Prolong server. See prolong.d.ts for the options. */
export function createSession(options = {}) {
  return new Session(options)
}

export class Session {
  #baseUrl
  #storage
  #key
  #activityKey
  #leadSeconds
  #jitterSeconds
  #clientId
  #mode
  #fetchImpl
  #lockImpl
  #apiOrigins
  #shared
  #channel = null
  #cleanups = []
  #closed = false

  #tokens = null
  #signedOut = null
  #timer = null
  #inflight = null
  #failures = 0
  #lastNetworkRefresh = 0
  #lastActivity = 0
  #activityWrittenAt = 0
  #activityTrailing = null
  #listeners = { refresh: new Set(), signedOut: new Set(), signedIn: new Set(), error: new Set() }

  constructor(options = {}) {
    if (options === null || typeof options !== 'object') throw new TypeError('createSession expects an options object')
    const {
      baseUrl,
      storage,
      storageKey = 'prolong',
      leadSeconds = 60,
      jitterSeconds = 30,
      clientId,
      mode = 'auto',
      fetch: fetchImpl,
      lock,
      apiOrigins = [],
      trackActivity,
      activityEvents = BROWSER_ACTIVITY_EVENTS,
    } = options

    const base = baseUrl ?? globalThis.location?.origin
    if (typeof base !== 'string' || base === '') {
      throw new TypeError('createSession requires baseUrl, the Prolong server URL (e.g. "https://auth.example.com")')
    }
    try {
      this.#baseUrl = new URL(base, globalThis.location?.href)
    } catch {
      throw new TypeError(`createSession baseUrl is not a valid URL: ${describe(baseUrl)}`)
    }
    if (!this.#baseUrl.pathname.endsWith('/')) this.#baseUrl.pathname += '/'

    const store = storage ?? defaultStorage()
    for (const m of ['getItem', 'setItem', 'removeItem']) {
      if (typeof store[m] !== 'function') throw new TypeError(`createSession storage must implement ${m}() like localStorage`)
    }
    if (!Number.isFinite(leadSeconds) || leadSeconds <= 0) {
      throw new RangeError(`createSession leadSeconds must be a positive number of seconds, got ${describe(leadSeconds)}`)
    }
    if (!Number.isFinite(jitterSeconds) || jitterSeconds < 0) {
      throw new RangeError(`createSession jitterSeconds must be a number of seconds >= 0, got ${describe(jitterSeconds)}`)
    }
    if (!['auto', 'refresh', 'renew'].includes(mode)) {
      throw new TypeError(`createSession mode must be "refresh", "renew" or "auto", got ${describe(mode)}`)
    }
    if (clientId !== undefined && (typeof clientId !== 'string' || clientId === '')) {
      throw new TypeError(`createSession clientId must be a non-empty string, got ${describe(clientId)}`)
    }
    const f = fetchImpl ?? globalThis.fetch
    if (typeof f !== 'function') throw new TypeError('createSession needs a fetch implementation (global fetch or the fetch option)')
    if (lock !== undefined && typeof lock !== 'function') throw new TypeError('createSession lock must be a function (name, fn) => Promise')
    if (!Array.isArray(apiOrigins)) throw new TypeError('createSession apiOrigins must be an array of origins')

    this.#storage = store
    this.#key = storageKey
    this.#activityKey = `${storageKey}.activity`
    this.#leadSeconds = leadSeconds
    this.#jitterSeconds = jitterSeconds
    this.#clientId = clientId
    this.#mode = mode
    this.#fetchImpl = fetchImpl ? fetchImpl : (...args) => globalThis.fetch(...args)
    this.#lockImpl = lock
    this.#apiOrigins = new Set([this.#baseUrl.origin, ...apiOrigins.map((o) => new URL(o).origin)])
    this.#shared = sharedFor(store, storageKey)
    this.#shared.sessions.add(this)

    this.#listenAcrossTabs(store)
    const inBrowser = typeof globalThis.addEventListener === 'function' && typeof globalThis.document !== 'undefined'
    if (trackActivity ?? inBrowser) this.#trackActivity(activityEvents)

    // Resume what the storage holds: a reload, or a tab opened on a signed-in session.
    const stored = this.#read()
    if (stored?.tokens) this.#adopt(stored.tokens, 'storage')
    else if (stored?.signedOut) this.#signedOut = stored.signedOut
  }

  // --- state ----------------------------------------------------------------------------------

  /** True while this object holds tokens of a live (as far as it knows) session. */
  get signedIn() {
    return this.#tokens !== null
  }
  /** Why the last session ended (a server reason, "logout", "logout_all", ...), or null. */
  get signedOutReason() {
    return this.#signedOut?.reason ?? null
  }
  /** The current access token, or null. Prefer `fetch`, which refreshes it when needed. */
  get accessToken() {
    return this.#tokens?.accessToken ?? null
  }
  get sessionId() {
    return this.#tokens?.sessionId ?? null
  }
  /** When the current access token expires, in local milliseconds since the epoch, or null. */
  get expiresAt() {
    return this.#tokens ? expiresAtOf(this.#tokens) : null
  }
  /** When the whole session ends at the latest (absolute lifetime), in local ms, or null. */
  get sessionExpiresAt() {
    return this.#tokens?.sessionExpiresAt ? this.#tokens.sessionExpiresAt * 1000 + this.#tokens.skewMs : null
  }
  /** The claims of the current access token (not verified), or null. */
  get claims() {
    return this.#tokens ? decodeJwt(this.#tokens.accessToken) : null
  }
  /** "refresh" or "renew": the mode of the current session (with mode "auto", as the server chose). */
  get mode() {
    if (!this.#tokens) return this.#mode === 'auto' ? null : this.#mode
    return this.#renews(this.#tokens) ? 'renew' : 'refresh'
  }

  // Renew mode when asked for, and whenever the server gave no refresh token (a renew-mode server).
  #renews(t) {
    return this.#mode === 'renew' || !t.refreshToken
  }
  /** Whole seconds since the user last interacted (in any tab sharing the storage). */
  get idleSeconds() {
    const shared = Number(this.#safeGet(this.#activityKey)) || 0
    const last = Math.max(this.#lastActivity, shared)
    if (last === 0) return 0
    return Math.max(0, Math.floor((Date.now() - last) / 1000))
  }

  // --- events ---------------------------------------------------------------------------------

  /** Calls `callback(info)` after each silent refresh/renew, here or in another tab. Returns an unsubscribe function. */
  onRefresh(callback) {
    return this.#on('refresh', callback)
  }
  /** Calls `callback(reason)` once when the session ends. Returns an unsubscribe function. */
  onSignedOut(callback) {
    return this.#on('signedOut', callback)
  }
  /** Calls `callback(info)` when a session starts here or in another tab. Returns an unsubscribe function. */
  onSignedIn(callback) {
    return this.#on('signedIn', callback)
  }
  /** Calls `callback(error)` when a refresh fails for a transient reason (it will be retried). */
  onError(callback) {
    return this.#on('error', callback)
  }

  #on(name, callback) {
    if (typeof callback !== 'function') throw new TypeError(`on${name[0].toUpperCase()}${name.slice(1)} expects a function`)
    this.#listeners[name].add(callback)
    return () => this.#listeners[name].delete(callback)
  }

  #emit(name, value) {
    for (const cb of [...this.#listeners[name]]) {
      try {
        cb(value)
      } catch (err) {
        queueMicrotask(() => {
          throw err
        })
      }
    }
  }

  // --- public operations ----------------------------------------------------------------------

  /** Signs in with a password. Resolves to the session info; rejects with a ProlongError (reason "bad_credentials", code "too_many_attempts", ...). */
  async login(username, password) {
    this.#assertOpen()
    if (typeof username !== 'string' || typeof password !== 'string') {
      throw new TypeError('login(username, password) expects two strings')
    }
    const params = { grant_type: 'password', username, password }
    if (this.#clientId) params.client_id = this.#clientId
    const sentAt = Date.now()
    const res = await this.#post('oauth/token', params)
    const body = await readJson(res)
    if (!res.ok) throw this.#errorFrom(res, body, 'sign-in failed')
    const rec = recordFrom(body, sentAt, Date.now())
    this.#touch(Date.now(), true)
    this.#write({ tokens: rec })
    this.#lastNetworkRefresh = Date.now()
    this.#tokens = null // a login always starts a new session, even over an existing one
    this.#adopt(rec, 'login')
    this.#notifyOthers()
    return this.#info(rec, 'login')
  }

  /**
   * Like `fetch`, with `Authorization: Bearer <access token>`. A relative URL is resolved against
   * `baseUrl`. When the API answers 401 `token_expired` (or `invalid_token`), refreshes once and
   * retries once. Rejects with a ProlongError code "signed_out" when there is no live session.
   */
  async fetch(input, init = {}) {
    this.#assertOpen()
    const isRequest = typeof Request !== 'undefined' && input instanceof Request
    const url = new URL(isRequest ? input.url : String(input), this.#baseUrl)
    if (!this.#apiOrigins.has(url.origin)) {
      throw new TypeError(`refusing to send the access token to ${url.origin}: add it to the apiOrigins option`)
    }
    const template = isRequest ? new Request(input, init) : null
    const send = (token) => {
      const headers = new Headers(isRequest ? template.headers : init.headers)
      headers.set('Authorization', `Bearer ${token}`)
      if (isRequest) return this.#fetchImpl(new Request(template.clone(), { headers }))
      return this.#fetchImpl(url.href, { ...init, headers })
    }

    const token = await this.#usableToken()
    const res = await send(token)
    if (res.status !== 401) return res
    const code = await bearerError(res)
    if (code !== 'token_expired' && code !== 'invalid_token') return res
    try {
      await this.#refresh(token)
    } catch (err) {
      if (this.#signedOut) throw this.#signedOutError()
      throw err
    }
    return send(this.#tokens.accessToken)
  }

  /** Refreshes (or renews) now, unless another tab just did. Resolves to the new token info. */
  async refresh() {
    this.#assertOpen()
    this.#syncFromStorage()
    if (!this.#tokens) throw this.#signedOutError()
    return this.#refresh(this.#tokens.accessToken)
  }

  /** Records user activity now (Node, or browsers with trackActivity off). */
  touch() {
    this.#touch(Date.now(), true)
  }

  /** Ends this session on the server (best effort) and here, in every tab. */
  async logout() {
    this.#syncFromStorage()
    const t = this.#tokens
    if (t) {
      try {
        // RFC 7009 revocation works with an expired access token too, and always answers 200.
        await this.#post('oauth/revoke', { token: t.refreshToken ?? t.accessToken })
      } catch {
        // unreachable server: the local sign-out below still happens
      }
    }
    this.#signOut('logout')
  }

  /** Ends every session of the user, on every device (POST /v1/logout-all), then here. */
  async logoutEverywhere() {
    const res = await this.fetch('v1/logout-all', { method: 'POST' })
    if (res.status !== 204) {
      throw this.#errorFrom(res, await readJson(res), 'log out everywhere failed')
    }
    this.#signOut('logout_all')
  }

  /** Stops timers and listeners without signing out (the stored session stays for other tabs). */
  close() {
    if (this.#closed) return
    this.#closed = true
    clearTimeout(this.#timer)
    clearTimeout(this.#activityTrailing)
    for (const fn of this.#cleanups.splice(0)) fn()
    this.#shared.sessions.delete(this)
    for (const set of Object.values(this.#listeners)) set.clear()
  }

  // --- refresh machinery ----------------------------------------------------------------------

  #assertOpen() {
    if (this.#closed) throw new ProlongError('this session object was closed', { code: 'closed' })
  }

  #signedOutError() {
    const reason = this.#signedOut?.reason ?? null
    return new ProlongError(reason ? `signed out (${reason})` : 'not signed in', { code: 'signed_out', reason })
  }

  async #usableToken() {
    this.#syncFromStorage()
    const t = this.#tokens
    if (!t) throw this.#signedOutError()
    if (expiresAtOf(t) - Date.now() > 0) return t.accessToken
    await this.#refresh(t.accessToken)
    return this.#tokens.accessToken
  }

  // One refresh at a time per object; across objects and tabs, the lock serializes them.
  #refresh(stale) {
    if (!this.#tokens) return Promise.reject(this.#signedOutError())
    if (this.#inflight) return this.#inflight
    const p = this.#withLock(() => this.#refreshLocked(stale)).finally(() => {
      if (this.#inflight === p) this.#inflight = null
    })
    this.#inflight = p
    return p
  }

  #withLock(fn) {
    const name = `prolong:${this.#key}`
    if (this.#lockImpl) return this.#lockImpl(name, fn)
    const locks = globalThis.navigator?.locks
    if (locks && typeof locks.request === 'function' && !(this.#storage instanceof MemoryStorage)) {
      return locks.request(name, { mode: 'exclusive' }, fn)
    }
    return inRealmLock(this.#shared, fn)
  }

  async #refreshLocked(stale) {
    // First look at what the storage holds: another tab may have refreshed, or signed out.
    const stored = this.#read()
    if (!stored?.tokens) {
      this.#signOut(stored?.signedOut?.reason ?? 'storage_cleared', { write: false })
      throw this.#signedOutError()
    }
    const t = stored.tokens
    if (!this.#tokens || t.accessToken !== this.#tokens.accessToken) this.#adopt(t, 'shared')
    const remaining = expiresAtOf(t) - Date.now()
    if (t.accessToken !== stale && remaining > lifetimeOf(t) * 1000 * STALE_FRACTION) {
      return this.#info(t, 'shared')
    }

    const renew = this.#renews(t)
    const idle = this.idleSeconds
    const sentAt = Date.now()
    let res
    try {
      if (renew) {
        res = await this.#post('v1/renew', { idle: String(idle) }, t.accessToken)
      } else {
        const params = { grant_type: 'refresh_token', refresh_token: t.refreshToken, idle: String(idle) }
        if (this.#clientId) params.client_id = this.#clientId
        res = await this.#post('oauth/token', params)
      }
    } catch (err) {
      throw new ProlongError(`the ${renew ? 'renew' : 'refresh'} request failed: ${err.message}`, { code: 'network', cause: err })
    }
    const body = await readJson(res)
    if (res.ok) {
      const rec = recordFrom(body, sentAt, Date.now())
      this.#lastNetworkRefresh = Date.now()
      this.#failures = 0
      // Without Web Locks another tab may have written meanwhile: keep whichever is newer, and
      // respect a sign-out that happened while the request was in flight.
      const now = this.#read()
      if (!now?.tokens) {
        this.#signOut(now?.signedOut?.reason ?? 'storage_cleared', { write: false })
        throw this.#signedOutError()
      }
      const newLogin = now.tokens.sessionId !== rec.sessionId
      if (newLogin || (now.tokens.accessToken !== t.accessToken && isNewer(now.tokens, rec))) {
        this.#adopt(now.tokens, 'shared')
        return this.#info(now.tokens, 'shared')
      }
      this.#write({ tokens: rec })
      this.#adopt(rec, renew ? 'renew' : 'refresh', idle)
      this.#notifyOthers()
      return this.#info(rec, renew ? 'renew' : 'refresh', idle)
    }
    if (res.status === 400 && body?.error === 'invalid_grant') {
      this.#signOut(body.reason ?? 'invalid_grant', { sessionId: t.sessionId })
      throw this.#signedOutError()
    }
    if (res.status === 401) {
      // /v1/renew accepts expired tokens until renew_until; a 401 means the token is no good.
      this.#signOut(body?.error === 'token_expired' ? 'expired_idle' : 'invalid_token', { sessionId: t.sessionId })
      throw this.#signedOutError()
    }
    throw this.#errorFrom(res, body, `${renew ? 'renew' : 'refresh'} failed`)
  }

  #info(t, source, idle) {
    const info = {
      source,
      at: Date.now(),
      sessionId: t.sessionId,
      expiresAt: expiresAtOf(t),
      exp: t.exp,
      iat: t.iat,
      lifetimeSeconds: lifetimeOf(t),
      idleExpiresAt: t.idleExpiresAt,
      sessionExpiresAt: t.sessionExpiresAt,
    }
    if (idle !== undefined) info.idle = idle
    return info
  }

  // Makes `t` the current token set and schedules its refresh.
  #adopt(t, source, idle) {
    const previous = this.#tokens
    this.#tokens = t
    this.#signedOut = null
    this.#schedule()
    if (source === 'storage') return
    if (!previous || previous.sessionId !== t.sessionId) this.#emit('signedIn', this.#info(t, source))
    else this.#emit('refresh', this.#info(t, source, idle))
  }

  #schedule() {
    clearTimeout(this.#timer)
    const t = this.#tokens
    if (!t || this.#closed) return
    const lead = refreshLead(lifetimeOf(t), this.#leadSeconds, this.#jitterSeconds)
    const now = Date.now()
    const delay = Math.max(expiresAtOf(t) - lead * 1000 - now, MIN_REFRESH_INTERVAL_MS - (now - this.#lastNetworkRefresh), 0)
    this.#setTimer(delay, () => this.#onTimer(t.accessToken))
  }

  #setTimer(delay, fn) {
    clearTimeout(this.#timer)
    const step = Math.min(delay, MAX_TIMER_MS)
    this.#timer = unref(setTimeout(() => (delay > step ? this.#setTimer(delay - step, fn) : fn()), step))
  }

  #onTimer(stale) {
    if (this.#closed || !this.#tokens) return
    this.#refresh(stale).catch((err) => {
      if (this.#closed || !this.#tokens) return // signed out: no retry loop
      this.#failures++
      this.#emit('error', err)
      const backoff = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** (this.#failures - 1))
      const wait = Math.max(backoff, (err.retryAfter ?? 0) * 1000)
      this.#setTimer(wait, () => this.#onTimer(this.#tokens?.accessToken))
    })
  }

  // Ends the session locally: every tab sharing the storage learns it, and with what reason.
  #signOut(reason, { write = true, sessionId } = {}) {
    if (!this.#tokens) {
      if (!this.#signedOut) this.#signedOut = { reason, at: Date.now() }
      return
    }
    const sid = sessionId ?? this.#tokens.sessionId
    if (sid !== this.#tokens.sessionId) return // an old session's failure: not ours any more
    this.#tokens = null
    this.#signedOut = { reason, at: Date.now() }
    clearTimeout(this.#timer)
    if (write) {
      const cur = this.#read()
      // never clobber a newer login made by another tab meanwhile
      if (!cur?.tokens || cur.tokens.sessionId === sid) {
        this.#write({ signedOut: this.#signedOut })
        this.#notifyOthers()
      }
    }
    this.#emit('signedOut', reason)
  }

  // Reconciles this object with the storage; called on every cross-tab notification.
  #syncFromStorage() {
    if (this.#closed) return
    const stored = this.#read()
    if (stored?.tokens) {
      if (!this.#tokens || stored.tokens.accessToken !== this.#tokens.accessToken) {
        // never step back to an older token of the same session
        if (this.#tokens && stored.tokens.sessionId === this.#tokens.sessionId && isNewer(this.#tokens, stored.tokens)) return
        this.#adopt(stored.tokens, 'shared')
      }
    } else if (this.#tokens) {
      this.#signOut(stored?.signedOut?.reason ?? 'storage_cleared', { write: false })
    }
  }

  // If the refresh time passed while timers were throttled (background tab, sleeping laptop).
  #checkDue() {
    this.#syncFromStorage()
    const t = this.#tokens
    if (!t) return
    const due = expiresAtOf(t) - refreshLead(lifetimeOf(t), this.#leadSeconds, 0) * 1000
    if (Date.now() >= due) this.#onTimer(t.accessToken)
  }

  #notifyOthers() {
    if (this.#channel) {
      try {
        this.#channel.postMessage({ type: 'changed', key: this.#key })
      } catch {
        // a closed channel: storage events still carry the news
      }
    }
    for (const other of this.#shared.sessions) {
      if (other !== this) queueMicrotask(() => other.#syncFromStorage())
    }
  }

  #listenAcrossTabs(store) {
    const add = (target, type, fn, opts) => {
      target.addEventListener(type, fn, opts)
      this.#cleanups.push(() => target.removeEventListener(type, fn, opts))
    }
    if (typeof BroadcastChannel === 'function' && !(store instanceof MemoryStorage)) {
      try {
        const ch = new BroadcastChannel(`prolong:${this.#key}`)
        ch.onmessage = (e) => {
          if (e.data?.key === this.#key) this.#syncFromStorage()
        }
        if (typeof ch.unref === 'function') ch.unref()
        this.#channel = ch
        this.#cleanups.push(() => ch.close())
      } catch {
        // no channel: storage events below are the fallback
      }
    }
    const win = globalThis
    if (typeof win.addEventListener === 'function' && typeof win.document !== 'undefined') {
      // Fires in the other tabs when localStorage changes: the fallback without BroadcastChannel.
      add(win, 'storage', (e) => {
        if (e.storageArea === store && (e.key === this.#key || e.key === null)) this.#syncFromStorage()
      })
      add(win.document, 'visibilitychange', () => {
        if (win.document.visibilityState === 'visible') this.#checkDue()
      })
      add(win, 'online', () => this.#checkDue())
    }
  }

  #trackActivity(events) {
    const win = globalThis
    if (typeof win.addEventListener !== 'function') return
    const onInput = () => this.#touch(Date.now(), false)
    for (const type of events) {
      win.addEventListener(type, onInput, { capture: true, passive: true })
      this.#cleanups.push(() => win.removeEventListener(type, onInput, { capture: true, passive: true }))
    }
  }

  // Records activity; shares it through the storage at most once a second (plus a trailing
  // write), so a tab that refreshes reports the idle time of the whole browser.
  #touch(now, immediate) {
    this.#lastActivity = now
    if (immediate || now - this.#activityWrittenAt >= ACTIVITY_WRITE_INTERVAL_MS) {
      this.#activityWrittenAt = now
      this.#safeSet(this.#activityKey, String(now))
    } else if (!this.#activityTrailing) {
      this.#activityTrailing = unref(
        setTimeout(() => {
          this.#activityTrailing = null
          this.#activityWrittenAt = Date.now()
          this.#safeSet(this.#activityKey, String(this.#lastActivity))
        }, ACTIVITY_WRITE_INTERVAL_MS),
      )
    }
  }

  // --- I/O helpers ----------------------------------------------------------------------------

  #read() {
    const raw = this.#safeGet(this.#key)
    if (raw === null || raw === undefined) return null
    try {
      const v = JSON.parse(raw)
      return v && v.v === 1 ? v : null
    } catch {
      return null
    }
  }

  #write(value) {
    this.#safeSet(this.#key, JSON.stringify({ v: 1, ...value }))
  }

  #safeGet(key) {
    try {
      return this.#storage.getItem(key)
    } catch {
      return null
    }
  }

  #safeSet(key, value) {
    try {
      this.#storage.setItem(key, value)
    } catch {
      // quota or disabled storage: this tab still works, only sharing suffers
    }
  }

  #post(path, params, bearer) {
    const headers = { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' }
    if (bearer) headers.Authorization = `Bearer ${bearer}`
    return this.#fetchImpl(new URL(path, this.#baseUrl).href, {
      method: 'POST',
      headers,
      body: new URLSearchParams(params).toString(),
      signal: timeoutSignal(REQUEST_TIMEOUT_MS),
    })
  }

  #errorFrom(res, body, what) {
    const code = body?.error ?? `http_${res.status}`
    const detail = body?.error_description ?? body?.reason ?? code
    return new ProlongError(`${what}: ${detail}`, {
      code,
      reason: body?.reason,
      status: res.status,
      retryAfter: parseRetryAfter(res),
    })
  }
}

// The `error` of a 401: Prolong's JSON body, or the RFC 6750 WWW-Authenticate attribute.
async function bearerError(res) {
  const body = await readJson(res.clone())
  if (body && typeof body.error === 'string') return body.error
  const m = /error="([^"]+)"/.exec(res.headers.get('www-authenticate') ?? '')
  return m ? m[1] : null
}

export default autorefresh
