// runCode in TypeScript, R and Java through @e2b/code-interpreter (the SDK
// sends language "ts", "r", "java"), in the SDK's own template: Sandbox.create()
// asks for code-interpreter-v1, which the gateway maps to sandpit's
// `code-interpreter` template (templates/code-interpreter/Dockerfile). Prints
// one JSON line of what it saw.
import { Sandbox } from '@e2b/code-interpreter'

const out = {}
const sbx = await Sandbox.create({ metadata: { suite: 'compat-code-languages' }, timeoutMs: 180_000 })
console.log(JSON.stringify({ created: [sbx.sandboxId] }))
try {
  const ts = await sbx.runCode('const n: number = 20; n + 22', { language: 'ts' })
  out.ts = ts.text ?? null
  const r = await sbx.runCode('cat("from r\\n"); 6 * 7', { language: 'r' })
  out.r = r.text ?? null
  out.rStdout = r.logs.stdout.join('')
  const java = await sbx.runCode('int k = 41;\nk + 1', { language: 'java' })
  out.java = java.text ?? null
  const err = await sbx.runCode('Integer.parseInt("x")', { language: 'java' })
  out.javaErr = err.error?.name ?? null
  // Rich results: an R plot is a PNG, Java's display() of html is html.
  const plot = await sbx.runCode('plot(1:10)', { language: 'r' })
  out.rPng = plot.results.filter(x => x.png).map(x => Buffer.from(x.png, 'base64').subarray(0, 8).toString('hex'))
  const shown = await sbx.runCode('display("<b>hi</b>", "text/html")', { language: 'java' })
  out.javaHtml = shown.results.map(x => x.html ?? null)
  const ctx = await sbx.createCodeContext({ language: 'r' })
  out.rCtx = ctx.language
  out.rCtxIsolated = (await sbx.runCode('exists("k")', { context: ctx })).text ?? null
  out.template = (await sbx.getInfo()).templateId
} finally {
  out.killed = await sbx.kill()
}
console.log(JSON.stringify(out))
