// Types for @prolong/client (prolong.js).

// ---------------------------------------------------------------------------------------------
// autorefresh (call-compatible with the npm package jwt-autorefresh)
// ---------------------------------------------------------------------------------------------

/** The error codes of argument and scheduling errors thrown or reported by `autorefresh`. */
export type AutorefreshErrorCode =
  | 'INVALID_OPTIONS'
  | 'INVALID_REFRESH'
  | 'INVALID_LEAD'
  | 'INVALID_JWT'
  | 'MISSING_EXP'
  | 'INVALID_EXP'
  | 'INVALID_NBF'
  | 'LEAD_TOO_LONG'
  | 'INVALID_REFRESH_RESULT'

/** A TypeError or RangeError with one of the codes above. */
export interface AutorefreshError extends Error {
  code: AutorefreshErrorCode
}

export interface AutorefreshOptions {
  /** Fetches a new access token; returns it or a promise of it. */
  refresh: () => string | PromiseLike<string>
  /** Seconds before `exp` to refresh: a positive number, or a function returning one (called per scheduling). */
  leadSeconds: number | (() => number)
  /** Receives refresh failures (a rejected refresh stops the schedule). Default: `log.error`, else `console.error`. */
  onError?: (error: Error) => void
  /** A logger such as bunyan's; only `error(err, message)` is used. */
  log?: { error?: (error: Error, message: string) => void }
}

/** Stops the schedule started by `start`. Returns nothing. */
export type CancelAutorefresh = () => void

/** Schedules refreshes for `accessToken` (refreshing at once when its time has passed). Throws on a bad token or lead. */
export type StartAutorefresh = (accessToken: string) => CancelAutorefresh

/**
 * Schedules calls to `refresh` `leadSeconds` before the access token's `exp`:
 * `const start = autorefresh({ refresh, leadSeconds }); const cancel = start(token)`.
 * Throws an {@link AutorefreshError} on bad options.
 */
export function autorefresh(options: AutorefreshOptions): StartAutorefresh
export default autorefresh

/** Reads a JWT's claims without verifying it. Throws an {@link AutorefreshError} (`INVALID_JWT`) on a malformed token. */
export function decodeJwt(token: string): Record<string, unknown> & { exp?: number; iat?: number; nbf?: number; sid?: string }

/**
 * Seconds before `exp` that a session refreshes a token living `lifetimeSeconds`: `leadSeconds`
 * plus up to `jitterSeconds` (at most a tenth of the lifetime), never more than half the lifetime.
 */
export function refreshLead(lifetimeSeconds: number, leadSeconds?: number, jitterSeconds?: number, random?: () => number): number

// ---------------------------------------------------------------------------------------------
// createSession
// ---------------------------------------------------------------------------------------------

/** Why the server ended a session (the `reason` of its `invalid_grant` answers). */
export type ServerReason =
  | 'unknown_token'
  | 'reuse_detected'
  | 'revoked'
  | 'expired_idle'
  | 'expired_absolute'
  | 'reauth_required'
  | 'version_mismatch'

/**
 * Why a session ended, as `onSignedOut` reports it: a server reason, or
 * - `logout` / `logout_all`: `logout()` / `logoutEverywhere()` here or in another tab;
 * - `invalid_token`: the server refused the token itself (renew mode);
 * - `storage_cleared`: the stored session disappeared (e.g. site data cleared).
 */
export type SignedOutReason = ServerReason | 'logout' | 'logout_all' | 'invalid_token' | 'storage_cleared' | 'invalid_grant'

export const SERVER_REASONS: readonly ('bad_credentials' | ServerReason)[]

/** The subset of the Web Storage API the session uses. */
export interface StorageLike {
  getItem(key: string): string | null
  setItem(key: string, value: string): void
  removeItem(key: string): void
}

/** A Web Storage-like map in memory (the default outside browsers). */
export class MemoryStorage implements StorageLike {
  readonly length: number
  key(index: number): string | null
  getItem(key: string): string | null
  setItem(key: string, value: string): void
  removeItem(key: string): void
  clear(): void
}

export interface SessionOptions {
  /** The Prolong server, e.g. "https://auth.example.com". Default in browsers: the page's origin. */
  baseUrl?: string | URL
  /** Where the tokens live. Default: `localStorage` in browsers, a new MemoryStorage in Node. Sessions sharing it share one login. */
  storage?: StorageLike
  /** The storage key (also names the lock and the BroadcastChannel). Default "prolong". */
  storageKey?: string
  /** Refresh this many seconds before `exp`. Default 60; never more than half the token's lifetime. */
  leadSeconds?: number
  /** Up to this many random seconds more (at most a tenth of the lifetime). Default 30. */
  jitterSeconds?: number
  /** Sent as `client_id` at login and refresh. Default: none (the server uses "prolong"). */
  clientId?: string
  /** "refresh" (refresh tokens), "renew" (POST /v1/renew), or "auto": whatever the server's login answer implies (renew when it gives no refresh token). Default "auto". */
  mode?: 'refresh' | 'renew' | 'auto'
  /** The fetch to use. Default: the global fetch. */
  fetch?: typeof fetch
  /** A custom cross-context lock `(name, fn) => Promise`. Default: Web Locks in browsers, else an in-process lock. */
  lock?: <T>(name: string, fn: () => Promise<T>) => Promise<T>
  /** Other origins `session.fetch` may send the access token to (the baseUrl's origin always may). */
  apiOrigins?: string[]
  /** Listen to user input events to report `idle`. Default: true in browsers, false in Node (call `touch()`). */
  trackActivity?: boolean
  /** The window events that count as user activity. */
  activityEvents?: string[]
}

/** What `login`, `refresh`, `onRefresh` and `onSignedIn` report. Times are local milliseconds unless noted. */
export interface TokenInfo {
  /** "login"; "refresh" or "renew" (done by this object); "shared" (adopted from another tab/object). */
  source: 'login' | 'refresh' | 'renew' | 'shared'
  /** When this happened. */
  at: number
  sessionId: string | null
  /** When the access token expires (local clock, corrected for a detected server clock skew). */
  expiresAt: number
  /** The token's `exp` and `iat` claims (server clock, seconds). */
  exp: number
  iat: number
  lifetimeSeconds: number
  /** Server clock, seconds: when the session ends if idle from now, and at the latest. */
  idleExpiresAt: number | null
  sessionExpiresAt: number | null
  /** The idle seconds reported with this refresh (refresh/renew only). */
  idle?: number
}

/** An error from the client or the server. */
export class ProlongError extends Error {
  /** "signed_out", "network", "closed", or the server's `error` (e.g. "invalid_grant", "too_many_attempts"). */
  code: string
  /** The server's or the sign-out's reason, when there is one (e.g. "bad_credentials", "expired_idle"). */
  reason?: string | null
  /** The HTTP status, for errors from the server. */
  status?: number
  /** Seconds from the Retry-After header (429). */
  retryAfter?: number
}

export class Session {
  constructor(options?: SessionOptions)
  readonly signedIn: boolean
  readonly signedOutReason: SignedOutReason | null
  readonly accessToken: string | null
  readonly sessionId: string | null
  readonly expiresAt: number | null
  readonly sessionExpiresAt: number | null
  readonly claims: Record<string, unknown> | null
  readonly mode: 'refresh' | 'renew' | null
  /** Whole seconds since the last user activity in any tab sharing the storage. */
  readonly idleSeconds: number

  /** Signs in; rejects with a ProlongError (reason "bad_credentials", code "too_many_attempts" with retryAfter, ...). */
  login(username: string, password: string): Promise<TokenInfo>
  /** fetch with the Bearer token; relative URLs resolve against baseUrl; on 401 token_expired refreshes once and retries once. Rejects with code "signed_out" when signed out. */
  fetch(input: string | URL | Request, init?: RequestInit): Promise<Response>
  /** Refreshes (or renews) now, unless another tab just did. */
  refresh(): Promise<TokenInfo>
  /** Records user activity now (Node, or with trackActivity off). */
  touch(): void
  /** Revokes the session on the server (best effort) and signs out here and in every tab. */
  logout(): Promise<void>
  /** POST /v1/logout-all: ends every session of the user, then signs out here. */
  logoutEverywhere(): Promise<void>
  /** Stops timers and listeners without signing out. */
  close(): void

  onRefresh(callback: (info: TokenInfo) => void): () => void
  onSignedOut(callback: (reason: SignedOutReason) => void): () => void
  onSignedIn(callback: (info: TokenInfo) => void): () => void
  /** A refresh failed for a transient reason (network, 5xx, 429); it is retried with backoff. */
  onError(callback: (error: ProlongError) => void): () => void
}

export function createSession(options?: SessionOptions): Session
