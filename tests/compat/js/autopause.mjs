// autoPause (lifecycle onTimeout 'pause'): at its deadline the sandbox is
// paused, not killed; Sandbox.connect resumes it with its state kept.
import { Sandbox } from '@e2b/code-interpreter'

const out = {}
const sbx = await Sandbox.create({ lifecycle: { onTimeout: 'pause' }, timeoutMs: 3_000 })
console.log(JSON.stringify({ created: [sbx.sandboxId] }))
try {
  await sbx.runCode('kept = 7')
  const info = await sbx.getInfo()
  out.lifecycle = info.lifecycle ?? null
  out.stateBefore = info.state
  // Wait for the deadline to pause it (bounded; the condition, not a delay).
  const until = Date.now() + 60_000
  let state = info.state
  while (state !== 'paused' && Date.now() < until) {
    await new Promise(r => setTimeout(r, 200))
    state = (await Sandbox.getInfo(sbx.sandboxId)).state
  }
  out.stateAtDeadline = state
  out.listedPaused = (await Sandbox.list({ query: { state: ['paused'] } }).nextItems())
    .some(s => s.sandboxId === sbx.sandboxId)
  const again = await Sandbox.connect(sbx.sandboxId, { timeoutMs: 60_000 })
  out.resumedState = (await again.getInfo()).state
  out.kept = (await again.runCode('kept')).text
} finally {
  out.killed = await sbx.kill()
}
console.log(JSON.stringify(out))
