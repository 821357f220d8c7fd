// The control plane: create with metadata and timeout, getInfo, setTimeout,
// list filtered by metadata and paginated, getMetrics, pause then connect
// (state kept), kill, after which the sandbox is gone.
import { Sandbox } from '@e2b/code-interpreter'

const out = {}
const tag = `compat-${process.pid}`
const a = await Sandbox.create({ metadata: { run: tag, n: '1' }, timeoutMs: 60_000 })
const b = await Sandbox.create({ metadata: { run: tag, n: '2' }, timeoutMs: 60_000 })
console.log(JSON.stringify({ created: [a.sandboxId, b.sandboxId] }))
try {
  const info = await a.getInfo()
  out.info = { id: info.sandboxId === a.sandboxId, metadata: info.metadata, state: info.state,
    templateId: info.templateId }
  const end0 = info.endAt.getTime()
  await a.setTimeout(300_000)
  const end1 = (await a.getInfo()).endAt.getTime()
  out.timeoutMoved = end1 - end0 > 200_000
  const all = await Sandbox.list({ query: { metadata: { run: tag } } }).nextItems()
  out.listed = all.map(s => s.metadata.n).sort()
  const one = await Sandbox.list({ query: { metadata: { run: tag, n: '2' } } }).nextItems()
  out.listedOne = one.map(s => s.sandboxId === b.sandboxId)
  const pager = Sandbox.list({ query: { metadata: { run: tag } }, limit: 1 })
  const seen = []
  while (pager.hasNext)
    seen.push(...(await pager.nextItems()).map(s => s.metadata.n))
  out.pages = seen.sort()
  const m = await a.getMetrics()
  out.metrics = m.length > 0 && typeof m[0].cpuUsedPct === 'number' && m[0].memTotal > 0
  await a.runCode('kept = "state before pause"')
  out.paused = await a.betaPause()
  out.pausedState = (await a.getInfo()).state
  out.pausedListed = (await Sandbox.list({ query: { metadata: { run: tag }, state: ['paused'] } }).nextItems())
    .map(s => s.sandboxId === a.sandboxId)
  const again = await Sandbox.connect(a.sandboxId)
  out.resumedState = (await again.getInfo()).state
  out.kept = (await again.runCode('kept')).text
} finally {
  out.killA = await a.kill()
  out.killB = await Sandbox.kill(b.sandboxId)
}
out.killAgain = await Sandbox.kill(a.sandboxId)
try {
  await Sandbox.getInfo(a.sandboxId)
  out.gone = 'still there'
} catch (e) {
  out.gone = e.name
}
out.listedAfter = (await Sandbox.list({ query: { metadata: { run: tag } } }).nextItems()).length
console.log(JSON.stringify(out))
