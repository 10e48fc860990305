// Test support: starts a real `prolong` server on port 0 with a fresh SQLite database and the
// settings a test needs, and stops it afterwards. Quiet by default; TEST_LOG=1 shows its logs.

import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const clientDir = resolve(dirname(fileURLToPath(import.meta.url)), '..')

export const PASSWORD = 'correct horse battery staple'

export function prolongBin() {
  const bin = process.env.PROLONG_BIN ? resolve(clientDir, process.env.PROLONG_BIN) : resolve(clientDir, '../../target/debug/prolong')
  if (!existsSync(bin)) {
    throw new Error(`the prolong binary is missing at ${bin}: run \`cargo build -p prolong-server\` or set PROLONG_BIN`)
  }
  return bin
}

// { tokens: { access_ttl: '2s' } } -> { PROLONG_TOKENS__ACCESS_TTL: '2s' }
function settingsEnv(settings, prefix = 'PROLONG') {
  const env = {}
  for (const [k, v] of Object.entries(settings)) {
    const name = `${prefix}${prefix === 'PROLONG' ? '_' : '__'}${k.toUpperCase()}`
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) Object.assign(env, settingsEnv(v, name))
    else env[name] = String(v)
  }
  return env
}

function cleanEnv(extra) {
  const env = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PROLONG_')) env[k] = v
  return { ...env, ...extra }
}

function run(bin, args, { env, input, timeoutMs = 15_000 }) {
  return new Promise((resolveRun, reject) => {
    const child = spawn(bin, args, { env, stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', reject)
    child.on('exit', (code) => {
      clearTimeout(timer)
      if (code === 0) resolveRun(out)
      else reject(new Error(`prolong ${args.join(' ')} exited ${code}: ${err.trim()}`))
    })
    child.stdin.end(input ?? '')
  })
}

/**
 * Starts `prolong serve` with `settings` (nested like the TOML file) and the given users, all with
 * PASSWORD. Resolves to { baseUrl, stop(), logs() }.
 */
export async function startServer({ settings = {}, users = ['alice'] } = {}) {
  const bin = prolongBin()
  const dir = await mkdtemp(join(tmpdir(), 'prolong-js-'))
  const databaseUrl = `sqlite://${join(dir, 'prolong.db')}`
  const env = cleanEnv(settingsEnv(settings))
  for (const user of users) {
    await run(bin, ['user', 'add', user, '--password-stdin', '--database-url', databaseUrl], { env, input: `${PASSWORD}\n` })
  }

  const child = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--database-url', databaseUrl], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let logs = ''
  const baseUrl = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`prolong serve did not log its address within 15 s:\n${logs}`)), 15_000)
    child.stderr.on('data', (d) => {
      logs += d
      if (process.env.TEST_LOG) process.stderr.write(d)
      const m = /listening on (http:\/\/\S+)/.exec(logs)
      if (m) {
        clearTimeout(timer)
        resolveUrl(m[1])
      }
    })
    child.on('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`prolong serve exited ${code} before listening:\n${logs}`))
    })
  })

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r))
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    }
    await rm(dir, { recursive: true, force: true })
  }
  return { baseUrl, stop, logs: () => logs }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** A fetch that records every response of the Prolong token endpoints, for assertions. */
export function recordingFetch() {
  const events = []
  const f = async (input, init) => {
    const res = await fetch(input, init)
    const url = String(input instanceof Request ? input.url : input)
    const path = new URL(url).pathname
    if (path === '/oauth/token' || path === '/v1/renew' || res.status === 401) {
      let body = null
      try {
        body = await res.clone().json()
      } catch {
        // not JSON
      }
      events.push({ path, status: res.status, error: body?.error, reason: body?.reason, refreshToken: body?.refresh_token, at: Date.now() })
    }
    return res
  }
  return { fetch: f, events }
}
