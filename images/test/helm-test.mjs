// The chart's `helm test` (charts/sandpit/templates/tests/sandbox-test.yaml):
// the official E2B SDK makes a sandbox through sandpit's gateway (the gateway
// creates the Sandbox and answers once it is Ready), runs
// python3 -c 'print(1+1)' in it, checks that it printed 2 and kills it.
//
// The SDK reads its own environment: E2B_API_URL and E2B_SANDBOX_URL (or
// E2B_DOMAIN) and E2B_API_KEY. Besides those:
//   SANDPIT_TOKEN_FILE  a Kubernetes token (the Pod's ServiceAccount) sent as
//                       Authorization: Bearer; the gateway then ignores the
//                       API key (docs/auth.md)
//   SANDPIT_TEMPLATE    the template (default: default)
//   SANDPIT_TIMEOUT     seconds for the create and the command (default 120)
// Success: one line on stdout, exit 0. Failure: one line on stderr, exit 1.
import { readFileSync } from 'node:fs'
import { Sandbox } from 'e2b'

const CODE = "python3 -c 'print(1+1)'"

function fail(msg) {
  console.error(`helm test: ${msg}`)
  process.exit(1)
}

function why(e) {
  return String(e && e.message ? e.message : e).split('\n')[0]
}

const env = process.env
if (!env.E2B_API_KEY) fail('E2B_API_KEY is not set')
if (!env.E2B_API_URL && !env.E2B_DOMAIN) fail('neither E2B_API_URL nor E2B_DOMAIN is set')
const template = env.SANDPIT_TEMPLATE || 'default'
const seconds = Number(env.SANDPIT_TIMEOUT || 120)
if (!Number.isInteger(seconds) || seconds <= 0) fail(`SANDPIT_TIMEOUT is not a number of seconds: ${env.SANDPIT_TIMEOUT}`)
const opts = { timeoutMs: (seconds + 60) * 1000, requestTimeoutMs: seconds * 1000 }
if (env.SANDPIT_TOKEN_FILE) {
  let token
  try {
    token = readFileSync(env.SANDPIT_TOKEN_FILE, 'utf8').trim()
  } catch (e) {
    fail(`cannot read SANDPIT_TOKEN_FILE: ${why(e)}`)
  }
  opts.headers = { Authorization: `Bearer ${token}` }
}
const where = env.E2B_API_URL || `https://api.${env.E2B_DOMAIN}`

let sbx
try {
  sbx = await Sandbox.create(template, opts)
} catch (e) {
  fail(`creating a sandbox of template ${template} through ${where}: ${why(e)}`)
}
let failure = null
try {
  const r = await sbx.commands.run(CODE, { timeoutMs: seconds * 1000 })
  if (r.exitCode !== 0 || r.stdout !== '2\n') {
    failure = `${CODE} in sandbox ${sbx.sandboxId}: exit ${r.exitCode}, stdout ${JSON.stringify(r.stdout)}, stderr ${JSON.stringify(r.stderr)}`
  }
} catch (e) {
  failure = `${CODE} in sandbox ${sbx.sandboxId}: ${why(e)}`
}
let killed = false
try {
  killed = await Sandbox.kill(sbx.sandboxId, opts)
} catch (e) {
  failure = failure || `killing sandbox ${sbx.sandboxId}: ${why(e)}`
}
if (failure) fail(failure)
if (!killed) fail(`killing sandbox ${sbx.sandboxId}: the gateway did not find it`)
console.log(`sandbox ${sbx.sandboxId} (template ${template}): ${CODE} printed 2; killed`)
