// runCode through @e2b/code-interpreter: state across calls, a DataFrame as
// html, an error as error.name, a matplotlib chart as png, JavaScript,
// contexts, the env of create. Prints one JSON line of what it saw.
import { Sandbox } from '@e2b/code-interpreter'

const out = {}
const sbx = await Sandbox.create({ metadata: { suite: 'compat-code' }, envs: { GREETING: 'hello-from-create' },
  timeoutMs: 120_000 })
console.log(JSON.stringify({ created: [sbx.sandboxId] }))
try {
  await sbx.runCode('x = 1')
  out.state = (await sbx.runCode('x + 1')).text
  const df = await sbx.runCode('import pandas as pd\npd.DataFrame({"a": [1, 2], "b": [3, 4]})')
  out.dfHtml = df.results.find(r => r.isMainResult)?.html ?? null
  const err = await sbx.runCode('1 / 0')
  out.errName = err.error?.name ?? null
  out.errValue = err.error?.value ?? null
  const chart = await sbx.runCode('import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()')
  const png = chart.results.find(r => r.png)?.png ?? ''
  out.pngMagic = Buffer.from(png, 'base64').subarray(0, 8).toString('hex')
  const stdout = []
  const printed = await sbx.runCode('import os\nprint(os.environ.get("GREETING"))', { onStdout: m => stdout.push(m.line) })
  out.envFromCreate = printed.logs.stdout.join('')
  out.onStdout = stdout.join('')
  out.js = (await sbx.runCode('[1, 2, 3].map(v => v * 2).join(",")', { language: 'js' })).text
  const ctx = await sbx.createCodeContext({ cwd: '/tmp' })
  out.ctxCwd = ctx.cwd
  await sbx.runCode('y = 41', { context: ctx })
  out.ctxState = (await sbx.runCode('y + 1', { context: ctx })).text
  out.ctxIsolated = (await sbx.runCode('"y" in globals()')).text
  out.contexts = (await sbx.listCodeContexts()).map(c => c.id).includes(ctx.id)
} finally {
  out.killed = await sbx.kill()
}
console.log(JSON.stringify(out))
