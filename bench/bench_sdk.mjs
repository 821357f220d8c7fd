// The E2B SDK's view for bench/bench_gateway.py: N rounds of Sandbox.create()
// -> runCode('1+1') -> kill(), and N commands.run('true') in one sandbox.
// Prints {"e2e": [ms...], "cmd": [ms...]}. With "stepped" as the second
// argument: the rounds only, each started by a line on stdin (the caller
// waits for the warm pool to settle in between), and {"e2e": [ms...]}.
import { createInterface } from 'node:readline'
import { Sandbox } from '@e2b/code-interpreter'

const n = Number(process.argv[2] || 20)
const stepped = process.argv[3] === 'stepped'
const go = stepped ? createInterface({ input: process.stdin })[Symbol.asyncIterator]() : null
const e2e = []
const cmd = []
for (let i = 0; i < n + 2; i++) {
  if (go && (await go.next()).done)
    throw new Error('stdin closed before the rounds were done')
  const t = performance.now()
  const sbx = await Sandbox.create()
  const ex = await sbx.runCode('1+1')
  await sbx.kill()
  if (ex.text !== '2')
    throw new Error(`runCode answered ${ex.text}`)
  if (i >= 2) // the first two warm up
    e2e.push(performance.now() - t)
  if (stepped)
    console.log(JSON.stringify({ round: i }))
}
if (stepped) {
  console.log(JSON.stringify({ e2e }))
  process.exit(0)
}
const sbx = await Sandbox.create()
try {
  for (let i = 0; i < n * 5 + 10; i++) {
    const t = performance.now()
    await sbx.commands.run('true')
    if (i >= 10)
      cmd.push(performance.now() - t)
  }
} finally {
  await sbx.kill()
}
console.log(JSON.stringify({ e2e, cmd }))
