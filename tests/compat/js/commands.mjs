// sbx.commands: run with onStdout streaming, a non-zero exit as
// CommandExitError, a background command fed on stdin and killed by pid,
// reconnecting with commands.connect, the list; a command whose sandbox is
// killed under it ends at once.
import { Sandbox, CommandExitError } from 'e2b'

const out = {}
const sbx = await Sandbox.create({ envs: { FROM_CREATE: 'yes' }, timeoutMs: 120_000 })
console.log(JSON.stringify({ created: [sbx.sandboxId] }))
let killed = false
try {
  const chunks = []
  const r = await sbx.commands.run('echo one; sleep 0.3; echo two; echo err >&2; echo $FROM_CREATE',
    { onStdout: d => chunks.push(d) })
  out.stdout = r.stdout
  out.stderr = r.stderr
  out.exitCode = r.exitCode
  out.chunks = chunks.length
  try {
    await sbx.commands.run('echo partial; exit 3')
    out.exit = 'no error'
  } catch (e) {
    out.exit = { isCommandExitError: e instanceof CommandExitError, exitCode: e.exitCode, stdout: e.stdout }
  }
  const r2 = await sbx.commands.run('pwd; id -un', { cwd: '/tmp', envs: { X: '1' } })
  out.cwdUser = r2.stdout
  out.asRoot = (await sbx.commands.run('id -un; echo $HOME', { user: 'root' })).stdout
  await sbx.files.write('/root/by-root.txt', 'r', { user: 'root' })
  out.rootFile = (await sbx.commands.run('stat -c %U /root/by-root.txt', { user: 'root' })).stdout
  const h = await sbx.commands.run('cat', { background: true, stdin: true })
  await sbx.commands.sendStdin(h.pid, 'fed on stdin\n')
  for (const end = Date.now() + 10_000; !h.stdout.includes('fed on stdin') && Date.now() < end;)
    await new Promise(res => setTimeout(res, 50))
  out.listed = (await sbx.commands.list()).some(p => p.pid === h.pid)
  out.killPid = await sbx.commands.kill(h.pid)
  try {
    await h.wait()
    out.bg = 'no error'
  } catch (e) {
    out.bg = { exitCode: e.exitCode, stdout: h.stdout }
  }
  out.killMissing = await sbx.commands.kill(999999)
  try {
    await sbx.commands.run('sleep 30', { timeoutMs: 1500 })
    out.timeout = 'no error'
  } catch (e) {
    out.timeout = e.name
  }
  const h2 = await sbx.commands.run('sleep 0.5; echo reconnected', { background: true })
  const c = await sbx.commands.connect(h2.pid)
  out.connect = (await c.wait()).stdout
  // The sandbox goes away under a running command: it must end now, not hang.
  let t0 = 0
  const long = sbx.commands.run('sleep 600', { timeoutMs: 0 })
    .then(() => 'resolved', e => ({ error: e.name, ms: Date.now() - t0 }))
  await new Promise(res => setTimeout(res, 500))
  t0 = Date.now()
  out.killed = await sbx.kill()
  killed = true
  out.orphan = await long
} finally {
  if (!killed)
    out.killed = await sbx.kill()
}
console.log(JSON.stringify(out))
