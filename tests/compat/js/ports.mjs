// sbx.getHost(port): a web server started in the sandbox as a background
// command, fetched through the gateway's port proxy. With E2B_SANDBOX_URL the
// SDK's getHost answers "<port>-<id>.<domain>"; a client in that mode sends
// the request to E2B_SANDBOX_URL with the E2b-Sandbox-Id/-Port headers.
import { Sandbox } from 'e2b'

const out = {}
const sbx = await Sandbox.create({ timeoutMs: 120_000 })
console.log(JSON.stringify({ created: [sbx.sandboxId] }))
try {
  await sbx.files.write('/tmp/www/hello-from-sandbox.txt', 'hello')
  const srv = await sbx.commands.run('python3 -m http.server 8080 --bind 127.0.0.1',
    { background: true, cwd: '/tmp/www' })
  const host = sbx.getHost(8080)
  out.host = host
  const m = /^(\d+)-([^.]+)\./.exec(host)
  out.hostNames = !!m && m[1] === '8080' && m[2] === sbx.sandboxId
  const get = path => fetch(process.env.E2B_SANDBOX_URL + path,
    { headers: { 'E2b-Sandbox-Id': m[2], 'E2b-Sandbox-Port': m[1] } })
  // Until the server listens (502 before).
  for (const end = Date.now() + 20_000; Date.now() < end;) {
    const r = await get('/')
    out.status = r.status
    out.contentType = r.headers.get('content-type')
    out.listing = await r.text()
    if (r.status !== 502)
      break
    await new Promise(res => setTimeout(res, 100))
  }
  const f = await get('/hello-from-sandbox.txt?x=a%20b')
  out.file = { status: f.status, body: await f.text() }
  const missing = await get('/no-such-file')
  out.missing = missing.status
  await missing.arrayBuffer()
  const closed = await fetch(process.env.E2B_SANDBOX_URL + '/',
    { headers: { 'E2b-Sandbox-Id': m[2], 'E2b-Sandbox-Port': '8081' } })
  out.closedPort = closed.status
  await closed.arrayBuffer()
  await sbx.commands.kill(srv.pid)
} finally {
  await sbx.kill()
}
console.log(JSON.stringify(out))
