// The E2B JavaScript SDK (2.39 or newer) against sandpit's gateway; the same
// environment as hello.py (docs/install.md):
//   npm install e2b && node examples/e2b/hello.mjs
import { Sandbox } from 'e2b'

if (!process.env.E2B_API_KEY || !(process.env.E2B_DOMAIN || process.env.E2B_API_URL)) {
  console.error('set E2B_API_KEY and E2B_API_URL/E2B_SANDBOX_URL (or E2B_DOMAIN): docs/install.md')
  process.exit(1)
}
const sbx = await Sandbox.create({ timeoutMs: 120_000 })
try {
  const r = await sbx.commands.run("python3 -c 'print(1+1)'")
  console.log(r.stdout.trim())
} finally {
  await sbx.kill()
}
