// Sandbox.create() with no cpu or memory (the agent's defaults), runCode,
// then what the sandbox's PID 1 says of its start (the test compares it with
// the time before this script ran: a claimed sandbox started earlier), the
// same of the python kernel that answered runCode (pre-started by the pool)
// and the env it sees, kill.
import { Sandbox } from '@e2b/code-interpreter'

const out = {}
const sbx = await Sandbox.create({ timeoutMs: 60_000, envs: { GREETING: 'hello' } })
console.log(JSON.stringify({ created: [sbx.sandboxId] }))
try {
  out.id = sbx.sandboxId
  out.code = (await sbx.runCode('1+1')).text
  out.kernel = (await sbx.runCode("import os\n(open('/proc/self/stat').read(), os.environ['GREETING'])")).text
  out.stat = (await sbx.commands.run('cat /proc/1/stat')).stdout
  out.hostname = (await sbx.commands.run('hostname')).stdout.trim()
} finally {
  out.killed = await sbx.kill()
}
console.log(JSON.stringify(out))
