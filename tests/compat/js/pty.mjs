// sbx.pty: a terminal session (create, type `echo hi`, read it, resize and
// see the new size in `stty size`, kill, the handle's wait ending).
import { Sandbox } from 'e2b'

const out = {}
const sbx = await Sandbox.create({ timeoutMs: 120_000 })
console.log(JSON.stringify({ created: [sbx.sandboxId] }))
const dec = new TextDecoder()
let text = ''
const until = async (what, ms = 15_000) => {
  for (const end = Date.now() + ms; !what() && Date.now() < end;)
    await new Promise(res => setTimeout(res, 50))
  return what()
}
try {
  const h = await sbx.pty.create({ cols: 80, rows: 24, onData: d => { text += dec.decode(d) } })
  out.pid = h.pid
  const enc = new TextEncoder()
  await sbx.pty.sendInput(h.pid, enc.encode('stty size; echo h""i\n'))
  out.hi = await until(() => /\bhi\r?\n/.test(text))
  out.sizeBefore = await until(() => text.includes('24 80'))
  await sbx.pty.resize(h.pid, { cols: 123, rows: 45 })
  await sbx.pty.sendInput(h.pid, enc.encode('stty size\n'))
  out.sizeAfter = await until(() => text.includes('45 123'))
  out.listed = (await sbx.commands.list()).some(p => p.pid === h.pid)
  out.killed = await sbx.pty.kill(h.pid)
  try {
    const r = await h.wait()
    out.wait = { exitCode: r.exitCode }
  } catch (e) {
    out.wait = { error: e.name, exitCode: e.exitCode }
  }
  try {
    await sbx.pty.resize(999999, { cols: 10, rows: 10 })
    out.resizeMissing = 'no error'
  } catch (e) {
    out.resizeMissing = e.name
  }
} finally {
  out.text = text.slice(-2000)
  await sbx.kill()
}
console.log(JSON.stringify(out))
