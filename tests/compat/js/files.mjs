// sbx.files: write and read text and bytes, list, exists, getInfo, rename,
// makeDir, remove; a missing file's error.
import { Sandbox } from 'e2b'

const out = {}
const sbx = await Sandbox.create({ timeoutMs: 120_000 })
console.log(JSON.stringify({ created: [sbx.sandboxId] }))
try {
  const f = sbx.files
  const w = await f.write('/home/user/compat/a.txt', 'hello files\n')
  out.writePath = w.path
  out.readText = await f.read('/home/user/compat/a.txt')
  const bytes = new Uint8Array(256).map((_, i) => i)
  await f.write('/home/user/compat/b.bin', bytes.buffer)
  const back = await f.read('/home/user/compat/b.bin', { format: 'bytes' })
  out.bytesEqual = back.length === 256 && back.every((v, i) => v === i)
  const many = await f.write([{ path: '/home/user/compat/m1.txt', data: 'one' },
                              { path: '/home/user/compat/m2.txt', data: 'two' }])
  out.multi = many.map(e => e.name)
  out.mkdir = await f.makeDir('/home/user/compat/sub')
  out.mkdirAgain = await f.makeDir('/home/user/compat/sub')
  out.list = (await f.list('/home/user/compat')).map(e => `${e.name}:${e.type}`).sort()
  out.existsTrue = await f.exists('/home/user/compat/a.txt')
  out.existsFalse = await f.exists('/home/user/compat/nope.txt')
  const info = await f.getInfo('/home/user/compat/a.txt')
  out.info = { name: info.name, type: info.type, size: info.size, path: info.path }
  const events = []
  const watcher = await f.watchDir('/home/user/compat', ev => events.push(`${ev.type}:${ev.name}`))
  await f.write('/home/user/compat/watched.txt', 'w')
  for (const end = Date.now() + 10_000; !events.some(e => e.endsWith(':watched.txt')) && Date.now() < end;)
    await new Promise(res => setTimeout(res, 50))
  await watcher.stop()
  out.watch = [...new Set(events.filter(e => e.endsWith(':watched.txt')))]
  await f.remove('/home/user/compat/watched.txt')
  out.rename = (await f.rename('/home/user/compat/a.txt', '/home/user/compat/c.txt')).path
  await f.remove('/home/user/compat/c.txt')
  out.removed = !(await f.exists('/home/user/compat/c.txt'))
  try {
    await f.read('/home/user/compat/missing.txt')
    out.missing = 'no error'
  } catch (e) {
    out.missing = e.name
  }
} finally {
  out.killed = await sbx.kill()
}
console.log(JSON.stringify(out))
