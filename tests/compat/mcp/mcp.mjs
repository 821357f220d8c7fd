// The official MCP TypeScript SDK client against sandpit's MCP server, over
// stdio (`sandpit mcp`) or Streamable HTTP (the gateway's /mcp):
//   node mcp.mjs stdio SCENARIO SANDPIT_BIN AGENT_URL
//   node mcp.mjs http SCENARIO GATEWAY_MCP_URL
//   node mcp.mjs bridge SCENARIO SANDPIT_BIN GATEWAY_MCP_URL   (`sandpit mcp --url`)
// The gateway's API key, when it needs one, is $SANDPIT_API_KEY (the bridge
// sends it as X-API-KEY; over HTTP the SDK is given the header).
// It prints one JSON line: what the SDK got back, for test_mcp.py to check.
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import http from 'node:http'

const [kind, scenario, ...rest] = process.argv.slice(2)
const key = process.env.SANDPIT_API_KEY || undefined
const out = { transport: kind }
const print = () => console.log(JSON.stringify(out))

function transport () {
  if (kind === 'stdio')
    return new StdioClientTransport({ command: rest[0], args: ['--server', rest[1], 'mcp'], stderr: 'inherit' })
  if (kind === 'bridge')
    return new StdioClientTransport({
      command: rest[0],
      args: ['mcp', '--url', rest[1]],
      env: { ...getDefaultEnvironment(), SANDPIT_API_KEY: key ?? '' },
      stderr: 'inherit'
    })
  return new StreamableHTTPClientTransport(new URL(rest[0]),
    { requestInit: { headers: key ? { 'X-API-KEY': key } : {} } })
}

const client = new Client({ name: 'sandpit-compat', version: '1.0.0' })
const t = transport()
await client.connect(t)
out.server = client.getServerVersion()
out.protocol = t.protocolVersion ?? null

const text = r => r.content.filter(c => c.type === 'text').map(c => c.text).join('\n')

async function end () {
  if (kind === 'http') {
    await t.terminateSession()
    out.terminated = t.sessionId === undefined
  }
  await client.close()
}

if (scenario === 'tools') {
  const { tools } = await client.listTools()
  out.tools = Object.fromEntries(tools.map(x => [x.name, {
    title: x.title, input: x.inputSchema, output: x.outputSchema ?? null, annotations: x.annotations ?? null,
  }]))
  out.ping = await client.ping()
  await end()
} else if (scenario === 'code') {
  const r = await client.callTool({ name: 'run_code', arguments: {
    code: 'import matplotlib\nmatplotlib.use("Agg")\nimport matplotlib.pyplot as plt\n' +
      'print("hello from mcp")\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()\n6 * 7' } })
  out.isError = r.isError ?? false
  out.text = text(r)
  out.images = r.content.filter(c => c.type === 'image').map(c => ({
    mimeType: c.mimeType, magic: Buffer.from(c.data, 'base64').subarray(0, 8).toString('hex') }))
  out.structured = r.structuredContent ?? null
  // State persists in the session's sandbox between calls.
  await client.callTool({ name: 'run_code', arguments: { code: 'x = 41' } })
  out.state = text(await client.callTool({ name: 'run_code', arguments: { code: 'x + 1' } }))
  const err = await client.callTool({ name: 'run_code', arguments: { code: '1/0' } })
  out.codeError = { isError: err.isError ?? false, name: err.structuredContent?.error?.name ?? null }
  // The session's template (default) has no R: the error says so.
  const noR = await client.callTool({ name: 'run_code', arguments: { code: '1', language: 'r' } })
  out.noR = { isError: noR.isError ?? false, text: text(noR) }
  await end()
} else if (scenario === 'files') {
  const w = await client.callTool({ name: 'write_file',
    arguments: { path: '/home/user/mcp/a.txt', content: 'hello files\n' } })
  out.write = w.structuredContent
  out.read = text(await client.callTool({ name: 'read_file', arguments: { path: '/home/user/mcp/a.txt' } }))
  // A 1x1 PNG written as base64 comes back as image content.
  const png = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='
  await client.callTool({ name: 'write_file', arguments: { path: 'mcp/dot.png', content: png, encoding: 'base64' } })
  const img = await client.callTool({ name: 'read_file', arguments: { path: 'mcp/dot.png' } })
  out.image = img.content.map(c => c.type === 'image' ? { type: c.type, mimeType: c.mimeType, same: c.data === png } : { type: c.type })
  const ls = await client.callTool({ name: 'list_files', arguments: { path: '/home/user/mcp' } })
  out.list = ls.structuredContent.entries.map(e => `${e.name}:${e.type}`).sort()
  const dl = await client.callTool({ name: 'download_files', arguments: { path: '/home/user/mcp' } })
  const res = dl.content.find(c => c.type === 'resource')
  out.download = { mimeType: res?.resource?.mimeType, gzip: Buffer.from(res?.resource?.blob ?? '', 'base64').subarray(0, 2).toString('hex') }
  const missing = await client.callTool({ name: 'read_file', arguments: { path: '/home/user/nope.txt' } })
  out.missing = { isError: missing.isError ?? false, text: text(missing) }
  await end()
} else if (scenario === 'cancel') {
  const ac = new AbortController()
  const progress = []
  const call = client.callTool({ name: 'run_command', arguments: {
    command: 'for i in $(seq 1 600); do echo tick-$i; sleep 0.1; done; echo mcp-long-done' } },
  undefined, { signal: ac.signal, onprogress: p => {
    progress.push(p)
    if (progress.length >= 3) ac.abort('enough')
  } })
  try {
    await call
    out.outcome = 'finished'
  } catch (e) {
    out.outcome = ac.signal.aborted ? 'aborted' : `error: ${e}`
  }
  out.progress = progress.length
  out.progressMessage = progress[0]?.message ?? null
  out.progressIncreasing = progress.every((p, i) => i === 0 || p.progress > progress[i - 1].progress)
  // The command was killed: wait (bounded) until no process of it is left.
  let left = null
  for (const until = Date.now() + 20_000; Date.now() < until;) {
    const r = await client.callTool({ name: 'run_command', arguments: { command: 'ps -eo args | grep -c "[s]eq 1 600" || true' } })
    left = r.structuredContent.stdout.trim()
    if (left === '0')
      break
    await new Promise(res => setTimeout(res, 200))
  }
  out.left = left
  const s = await client.callTool({ name: 'run_command', arguments: { command: 'true' } })
  out.sandbox = s.structuredContent.sandbox_id
  await end()
} else if (scenario === 'badarg') {
  const bad = await client.callTool({ name: 'run_code', arguments: { code: 5 } })
  out.bad = { isError: bad.isError ?? false, text: text(bad) }
  const unknownArg = await client.callTool({ name: 'run_command', arguments: { command: 'true', bogus: 1 } })
  out.unknownArg = { isError: unknownArg.isError ?? false, text: text(unknownArg) }
  const noSbx = await client.callTool({ name: 'get_metrics', arguments: { sandbox_id: 'no-such-sandbox' } })
  out.noSandbox = { isError: noSbx.isError ?? false, text: text(noSbx) }
  try {
    await client.callTool({ name: 'no_such_tool', arguments: {} })
    out.unknownTool = 'no error'
  } catch (e) {
    out.unknownTool = { code: e.code, message: e.message }
  }
  // Nothing was made for any of it: the session has no sandbox yet.
  const l = await client.callTool({ name: 'list_sandboxes', arguments: {} })
  out.sessionSandboxes = l.structuredContent.sandboxes.filter(s => s.session_sandbox).length
  await end()
} else if (scenario === 'languages') {
  // run_code as the node's templates have it (GET /v1/info's template_languages).
  const { tools } = await client.listTools()
  const rc = tools.find(x => x.name === 'run_code')
  out.enum = rc.inputSchema.properties.language.enum
  out.description = rc.description
  // A language the session's template (default) does not list: refused
  // before the session's sandbox is made, naming what runs.
  const noR = await client.callTool({ name: 'run_code', arguments: { code: '1', language: 'r' } })
  out.noR = { isError: noR.isError ?? false, text: text(noR) }
  // What the agent lists while the session is open (its socket: $SANDPIT_AGENT_SOCKET).
  out.agentSandboxes = await new Promise((resolve, reject) => {
    http.get({ socketPath: process.env.SANDPIT_AGENT_SOCKET, path: '/v1/sandboxes' }, res => {
      let body = ''
      res.on('data', d => { body += d })
      res.on('end', () => resolve(JSON.parse(body).sandboxes.map(s => s.id)))
    }).on('error', reject)
  })
  const l = await client.callTool({ name: 'list_sandboxes', arguments: {} })
  out.sessionSandboxes = l.structuredContent.sandboxes.filter(s => s.session_sandbox).length
  // A language it lists still runs (and makes the session's sandbox).
  const ok = await client.callTool({ name: 'run_code', arguments: { code: 'echo $((6*7))', language: 'bash' } })
  out.bash = { isError: ok.isError ?? false, text: text(ok), sandbox: ok.structuredContent?.sandbox_id ?? null }
  await end()
} else if (scenario === 'lifecycle') {
  const run = `mcp-${process.pid}`
  const c = await client.callTool({ name: 'create_sandbox', arguments: { metadata: { run }, timeout: 120, env: { FROM_MCP: 'yes' } } })
  const id = c.structuredContent.sandbox_id
  console.log(JSON.stringify({ created: [id] }))
  out.made = { state: c.structuredContent.state, session: c.structuredContent.session_sandbox, metadata: c.structuredContent.metadata }
  const l = await client.callTool({ name: 'list_sandboxes', arguments: { metadata: { run } } })
  out.listed = l.structuredContent.sandboxes.map(s => s.sandbox_id === id)
  out.env = (await client.callTool({ name: 'run_command', arguments: { command: 'echo $FROM_MCP', sandbox_id: id } })).structuredContent.stdout
  const t = await client.callTool({ name: 'set_timeout', arguments: { sandbox_id: id, timeout: 600 } })
  out.timeoutMoved = Date.parse(t.structuredContent.expires_at) - Date.now() > 300_000
  out.paused = (await client.callTool({ name: 'pause_sandbox', arguments: { sandbox_id: id } })).structuredContent.state
  const busy = await client.callTool({ name: 'run_command', arguments: { command: 'true', sandbox_id: id } })
  out.whilePaused = { isError: busy.isError ?? false, text: text(busy) }
  out.resumed = (await client.callTool({ name: 'resume_sandbox', arguments: { sandbox_id: id } })).structuredContent.state
  const m = await client.callTool({ name: 'get_metrics', arguments: { sandbox_id: id } })
  out.metrics = typeof m.structuredContent.metrics.memory_used === 'number'
  out.killed = (await client.callTool({ name: 'kill_sandbox', arguments: { sandbox_id: id } })).structuredContent.killed
  const again = await client.callTool({ name: 'kill_sandbox', arguments: { sandbox_id: id } })
  out.killAgain = { isError: again.isError ?? false, text: text(again) }
  out.listedAfter = (await client.callTool({ name: 'list_sandboxes', arguments: { metadata: { run } } })).structuredContent.sandboxes.length
  await end()
} else if (scenario === 'session') {
  const r = await client.callTool({ name: 'run_command', arguments: { command: 'echo $((6*7))' } })
  out.stdout = r.structuredContent.stdout
  out.sandbox = r.structuredContent.sandbox_id
  console.log(JSON.stringify({ created: [out.sandbox] }))
  await end()
}
print()
