// API keys through the SDK (tests/compat/test_auth.py): one step a run, named
// by argv[2], with the key of E2B_API_KEY; prints one JSON line (errors by name).
import { Sandbox } from '@e2b/code-interpreter'

const [step, id] = process.argv.slice(2)
const out = {}
const errName = async (f) => {
  try {
    await f()
    return 'none'
  } catch (e) {
    return e.name
  }
}
if (step === 'run') {
  // create, run, kill with a real key
  const s = await Sandbox.create({ timeoutMs: 60_000 })
  console.log(JSON.stringify({ created: [s.sandboxId] }))
  out.stdout = (await s.commands.run('echo hello from a key')).stdout
  out.listed = (await Sandbox.list().nextItems()).some(x => x.sandboxId === s.sandboxId)
  out.killed = await s.kill()
} else if (step === 'create') {
  // a sandbox left running for the other steps
  const s = await Sandbox.create({ timeoutMs: 120_000 })
  console.log(JSON.stringify({ created: [s.sandboxId] }))
  out.id = s.sandboxId
} else if (step === 'list') {
  out.ids = (await Sandbox.list().nextItems()).map(x => x.sandboxId)
} else if (step === 'foreign') {
  // another namespace's sandbox: invisible, and it cannot be touched
  out.listed = (await Sandbox.list().nextItems()).some(x => x.sandboxId === id)
  out.info = await errName(() => Sandbox.getInfo(id))
  out.connect = await errName(() => Sandbox.connect(id))
  out.setTimeout = await errName(() => Sandbox.setTimeout(id, 30_000))
  out.kill = await Sandbox.kill(id)
} else if (step === 'use') {
  // connect to a sandbox of the key's namespace and run a command in it
  const s = await Sandbox.connect(id)
  out.stdout = (await s.commands.run('echo still mine')).stdout
} else if (step === 'kill') {
  out.kill = await Sandbox.kill(id)
} else if (step === 'refused') {
  // a key the gateway does not take: create and list both refused
  out.create = await errName(() => Sandbox.create({ timeoutMs: 60_000 }))
  out.list = await errName(() => Sandbox.list().nextItems())
}
console.log(JSON.stringify(out))
