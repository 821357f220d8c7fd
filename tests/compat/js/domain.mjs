// E2B_DOMAIN mode over TLS: the control plane at https://api.<domain>, envd,
// the code interpreter and ports at https://<port>-<id>.<domain>. Create,
// runCode, commands.run, files, getHost, kill. With argv[2] = 'refused' only a
// create, which must fail (the certificate is not trusted).
import { Sandbox } from '@e2b/code-interpreter'

const out = {}
if (process.argv[2] === 'refused') {
  try {
    const s = await Sandbox.create({ timeoutMs: 60_000 })
    console.log(JSON.stringify({ created: [s.sandboxId] }))
    await s.kill()
    out.refused = false
  } catch (e) {
    let c = e
    while (c && c.cause && !c.code)
      c = c.cause
    out.refused = true
    out.error = String((c && c.code) || e)
  }
  console.log(JSON.stringify(out))
  process.exit(0)
}
const sbx = await Sandbox.create({ metadata: { mode: 'domain' }, timeoutMs: 120_000 })
console.log(JSON.stringify({ created: [sbx.sandboxId] }))
try {
  out.envdUrl = sbx.envdApiUrl ?? null
  await sbx.runCode('x = 20')
  out.code = (await sbx.runCode('x + 22')).text
  out.cmd = (await sbx.commands.run('echo over-tls; hostname >/dev/null')).stdout
  await sbx.files.write('/home/user/tls.txt', 'secret over tls\n')
  out.read = await sbx.files.read('/home/user/tls.txt')
  out.exists = await sbx.files.exists('/home/user/nope')
  out.host = sbx.getHost(8080)
  const listed = await Sandbox.list({ query: { metadata: { mode: 'domain' } } }).nextItems()
  out.listed = listed.map(s => s.sandboxId === sbx.sandboxId)
} finally {
  out.killed = await sbx.kill()
}
console.log(JSON.stringify(out))
