// The demo page: sign in, call the API, watch the access token being refreshed silently, manage
// sessions. All session logic lives in the client library; this file only renders it.

import { createSession } from './prolong.js'

const $ = (id) => document.getElementById(id)

const REASONS = {
  logout: 'You logged out.',
  logout_all: 'You logged out everywhere.',
  expired_idle: 'You were inactive for too long.',
  expired_absolute: 'The session reached its maximum lifetime; please sign in again.',
  revoked: 'This session was ended, from another device or by an administrator.',
  version_mismatch: 'Every session of this account was ended (logged out everywhere).',
  reauth_required: 'Please sign in again (the password was changed or reset).',
  reuse_detected: 'A refresh token was used twice, so the session was ended to be safe.',
  unknown_token: 'The server no longer recognizes this session.',
  invalid_token: 'The server refused the access token.',
  storage_cleared: 'The stored session was removed.',
}

const session = createSession({ baseUrl: location.origin })
const MAX_LOG = 100
let refreshCount = 0

const time = (ms) => {
  const d = new Date(ms)
  return `${d.toLocaleTimeString([], { hour12: false })}.${String(d.getMilliseconds()).padStart(3, '0')}`
}

// Unix seconds -> a local time (with the date when it is not today).
const asDate = (s) => {
  if (typeof s !== 'number') return '–'
  const d = new Date(s * 1000)
  return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString([], { hour12: false }) : d.toLocaleString([], { hour12: false })
}

function setStatus(text, kind) {
  const el = $('status')
  el.textContent = text
  el.className = `pill pill-${kind}`
}

function render() {
  const signedIn = session.signedIn
  $('app').hidden = !signedIn
  $('login-panel').hidden = signedIn
  const reason = session.signedOutReason
  $('signed-out').hidden = signedIn || !reason
  document.body.dataset.state = signedIn ? 'signed-in' : 'signed-out'
  if (signedIn) {
    setStatus('signed in', 'ok')
    $('session-id').textContent = session.sessionId ?? ''
    $('session-mode').textContent = session.mode === 'renew' ? 'renew (no refresh token)' : 'refresh token rotation'
    $('session-expires').textContent = session.sessionExpiresAt ? asDate(session.sessionExpiresAt / 1000) : '–'
  } else if (reason) {
    setStatus(`signed out (${reason})`, 'bad')
    $('signed-out-reason').textContent = reason
    $('signed-out-text').textContent = REASONS[reason] ?? ''
  } else {
    setStatus('signed out', 'idle')
  }
}

// --- the countdown, every 250 ms --------------------------------------------------------------

function tick() {
  if (!session.signedIn) return
  const left = Math.max(0, session.expiresAt - Date.now())
  const lifetime = (session.claims?.exp - session.claims?.iat) * 1000 || 1
  $('token-remaining').textContent = `${(left / 1000).toFixed(1)} s`
  const bar = $('token-progress')
  bar.value = Math.min(1, left / lifetime)
  bar.classList.toggle('low', left < lifetime / 4)
  $('idle-seconds').textContent = `${session.idleSeconds} s`
}
setInterval(tick, 250)

// --- the refresh log --------------------------------------------------------------------------

function logEntry(kind, text, source) {
  const li = document.createElement('li')
  li.dataset.testid = kind === 'refresh' ? 'refresh-entry' : `${kind}-entry`
  li.className = `entry entry-${kind}`
  if (source) li.dataset.source = source
  const when = document.createElement('time')
  when.textContent = time(Date.now())
  const what = document.createElement('span')
  what.textContent = text
  li.append(when, what)
  const list = $('refresh-log')
  list.prepend(li)
  while (list.children.length > MAX_LOG) list.lastElementChild.remove()
  $('refresh-empty').hidden = true
}

session.onRefresh((info) => {
  refreshCount++
  $('refresh-count').textContent = String(refreshCount)
  const by = info.source === 'shared' ? 'from another tab' : info.source === 'renew' ? 'renewed' : 'refreshed'
  const idle = info.idle !== undefined ? ` · idle ${info.idle} s` : ''
  logEntry('refresh', `${by} · expires ${time(info.expiresAt)}${idle}`, info.source)
  render()
})

session.onError((err) => logEntry('error', `refresh failed, will retry: ${err.message}`))

session.onSignedIn(() => {
  logEntry('login', 'signed in')
  render()
  loadMe()
  loadSessions()
})

session.onSignedOut((reason) => {
  logEntry('signout', `signed out (${reason})`)
  $('sessions-list').replaceChildren()
  $('me-result').textContent = 'Press the button to call a protected endpoint.'
  $('me-status').textContent = ''
  render()
})

// --- sign in ----------------------------------------------------------------------------------

$('login-form').addEventListener('submit', async (e) => {
  e.preventDefault()
  const error = $('login-error')
  error.hidden = true
  const username = $('username').value.trim()
  const password = $('password').value
  if (!username || !password) {
    error.textContent = 'Enter a username and a password.'
    error.hidden = false
    return
  }
  const button = $('login-button')
  button.disabled = true
  try {
    await session.login(username, password)
    $('password').value = ''
  } catch (err) {
    error.textContent =
      err.reason === 'bad_credentials'
        ? 'Wrong username or password.'
        : err.code === 'too_many_attempts'
          ? `Too many attempts; try again in ${err.retryAfter ?? 'a few'} seconds.`
          : `Sign-in failed: ${err.message}`
    error.hidden = false
  } finally {
    button.disabled = false
  }
})

// --- the API ----------------------------------------------------------------------------------

let meCalls = 0
async function loadMe() {
  const status = $('me-status')
  try {
    const res = await session.fetch('/v1/me')
    const body = await res.json()
    meCalls++
    status.textContent = `${res.status} at ${time(Date.now())} (call ${meCalls})`
    status.dataset.status = String(res.status)
    $('me-result').textContent = JSON.stringify(body, null, 2)
    if (res.ok) $('whoami').textContent = body.username
  } catch (err) {
    status.textContent = err.code === 'signed_out' ? 'signed out' : `failed: ${err.message}`
    status.dataset.status = 'error'
  }
}
$('me-button').addEventListener('click', loadMe)

function describeAgent(ua) {
  if (!ua) return 'unknown client'
  const browser = /Edg\//.test(ua) ? 'Edge' : /Firefox\//.test(ua) ? 'Firefox' : /Chrom(e|ium)\//.test(ua) ? 'Chrome' : /Safari\//.test(ua) ? 'Safari' : /^node|undici/i.test(ua) ? 'Node' : /curl/i.test(ua) ? 'curl' : 'Client'
  const os = /Windows/.test(ua) ? 'Windows' : /Android/.test(ua) ? 'Android' : /iPhone|iPad/.test(ua) ? 'iOS' : /Mac OS X/.test(ua) ? 'macOS' : /Linux/.test(ua) ? 'Linux' : ''
  return os ? `${browser} on ${os}` : browser
}

async function loadSessions() {
  const list = $('sessions-list')
  const error = $('sessions-error')
  error.hidden = true
  let sessions
  try {
    const res = await session.fetch('/v1/sessions')
    if (!res.ok) throw new Error(`HTTP ${res.status}`)
    sessions = await res.json()
  } catch (err) {
    if (err.code !== 'signed_out') {
      error.textContent = `Could not load the sessions: ${err.message}`
      error.hidden = false
    }
    return
  }
  sessions.sort((a, b) => Number(b.current) - Number(a.current) || b.last_active_at - a.last_active_at)
  list.replaceChildren(
    ...sessions.map((s) => {
      const li = document.createElement('li')
      li.dataset.testid = 'session-item'
      li.dataset.sessionId = s.id
      li.dataset.current = String(Boolean(s.current))
      const info = document.createElement('div')
      const title = document.createElement('strong')
      title.textContent = describeAgent(s.user_agent)
      title.title = s.user_agent ?? ''
      const meta = document.createElement('span')
      meta.className = 'muted'
      meta.textContent = `signed in ${asDate(s.created_at)} · active ${asDate(s.last_active_at)}`
      info.append(title, meta)
      li.append(info)
      if (s.current) {
        const badge = document.createElement('span')
        badge.className = 'badge'
        badge.textContent = 'this browser'
        li.append(badge)
      } else {
        const end = document.createElement('button')
        end.type = 'button'
        end.textContent = 'end'
        end.className = 'small'
        end.dataset.testid = 'end-session'
        end.addEventListener('click', async () => {
          end.disabled = true
          try {
            const res = await session.fetch(`/v1/sessions/${encodeURIComponent(s.id)}`, { method: 'DELETE' })
            if (res.status !== 204 && res.status !== 404) throw new Error(`HTTP ${res.status}`)
          } catch (err) {
            if (err.code !== 'signed_out') {
              error.textContent = `Could not end the session: ${err.message}`
              error.hidden = false
            }
          }
          loadSessions()
        })
        li.append(end)
      }
      return li
    }),
  )
}
$('sessions-reload').addEventListener('click', loadSessions)

// --- sign out ---------------------------------------------------------------------------------

$('logout-button').addEventListener('click', () => session.logout())
$('logout-all-button').addEventListener('click', async () => {
  try {
    await session.logoutEverywhere()
  } catch (err) {
    if (err.code !== 'signed_out') logEntry('error', `log out everywhere failed: ${err.message}`)
  }
})

// --- start ------------------------------------------------------------------------------------

render()
tick()
if (session.signedIn) {
  loadMe()
  loadSessions()
}
