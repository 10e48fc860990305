// Development aid, not how Prolong runs: `prolong serve` embeds the demo page and serves it itself.
// This tiny server serves the page's four files straight from the working tree (with the same
// Content-Security-Policy) and forwards everything else to a prolong server, so the page can be
// worked on without rebuilding the binary. The browser tests use it only with PROLONG_WEB_PROXY=1.
//
//   node tests/browser/proxy.js http://127.0.0.1:8080     # prints the URL to open

import { readFile } from 'node:fs/promises'
import http from 'node:http'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

export const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/** The demo page's files: URL path -> [file in the repository, content type]. */
export const FILES = {
  '/': ['web/index.html', 'text/html; charset=utf-8'],
  '/assets/app.js': ['web/app.js', 'text/javascript; charset=utf-8'],
  '/assets/style.css': ['web/style.css', 'text/css; charset=utf-8'],
  '/assets/prolong.js': ['clients/js/prolong.js', 'text/javascript; charset=utf-8'],
}

export function readRepoFile(path) {
  return readFile(resolve(root, path), 'utf8')
}

/** Starts the proxy in front of `upstream` on 127.0.0.1 (port 0). Resolves to { url, close() }. */
export function startProxy(upstream) {
  const target = new URL(upstream)
  const server = http.createServer(async (req, res) => {
    const path = new URL(req.url, 'http://x').pathname
    const file = req.method === 'GET' ? FILES[path] : undefined
    if (file) {
      res.writeHead(200, {
        'content-type': file[1],
        'content-security-policy': CSP,
        'cache-control': 'no-cache',
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
      })
      res.end(await readRepoFile(file[0]))
      return
    }
    const headers = { ...req.headers, host: target.host }
    // The page's origin is the proxy's; the server only accepts its own (CONTRACT §4, CORS).
    if (headers.origin) headers.origin = target.origin
    const upstreamReq = http.request(
      { hostname: target.hostname, port: target.port, method: req.method, path: req.url, headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers)
        up.pipe(res)
      },
    )
    upstreamReq.on('error', (err) => {
      res.writeHead(502, { 'content-type': 'text/plain' })
      res.end(`proxy: ${err.message}`)
    })
    req.pipe(upstreamReq)
  })
  return new Promise((resolveStart) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      resolveStart({
        url: `http://127.0.0.1:${port}`,
        close: () =>
          new Promise((r) => {
            server.close(() => r())
            server.closeAllConnections()
          }),
      })
    })
  })
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const upstream = process.argv[2]
  if (!upstream) {
    console.error('usage: node tests/browser/proxy.js http://127.0.0.1:PORT')
    process.exit(2)
  }
  const { url } = await startProxy(upstream)
  console.log(`demo page (from the working tree) at ${url}/, API forwarded to ${upstream}`)
}
