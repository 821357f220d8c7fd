// sandpit JavaScript kernel: a persistent Node.js global scope, driven by the
// node agent. Started inside the sandbox by sandpit-init as
//     node --expose-internals /.sandpit-kernels/javascript.js SOCKET
// with a one-time token on stdin; speaks the same JSON-lines protocol as
// python.py (docs/code-interpreter.md). --expose-internals gives the REPL's own
// top-level-await rewrite (internal/repl/await), so `await` works at the top
// level with declarations kept across runs, as in `node`'s REPL.
'use strict';
const fs = require('fs');
const net = require('net');
const vm = require('vm');
const util = require('util');
const Module = require('module');
const limit = require('./sandpit_limit.js');
const mask = require('./sandpit_mask.js');

let processTopLevelAwait = null;
try {
  ({ processTopLevelAwait } = require('internal/repl/await'));
} catch (e) {
  processTopLevelAwait = null;
}

const sockPath = process.argv[2];
const token = fs.readFileSync(0, 'utf8').trim();
const sandboxSecrets = mask.sandboxValues();
let secrets = new mask.Values(sandboxSecrets);
const streams = { stdout: new mask.Stream(secrets), stderr: new mask.Stream(secrets) };
const sleepCell = new Int32Array(new SharedArrayBuffer(4));
let fd = -1;
let active = false;
let count = 0;
let interrupt = null; // rejects the pending top-level await on SIGINT

// Masks the sandbox's secret values plus a run's own (its secret_env).
function setSecrets(extra) {
  secrets = new mask.Values(sandboxSecrets.concat(extra));
  streams.stdout.values = streams.stderr.values = secrets;
}

// Whole lines, synchronously: output is sent as it is produced, even by code
// that never yields to the event loop. Every string of an event is masked:
// stdout/stderr text by its stream's masker (a value may straddle two writes),
// whose held-back tail goes out before any other event.
function send(obj) {
  if (obj.type === 'stdout' || obj.type === 'stderr') {
    const text = streams[obj.type].feed(obj.text);
    if (!text.length) return;
    obj = { type: obj.type, text };
  } else if (obj.type !== 'hello') {
    flushStreams();
    obj = secrets.maskObj(obj);
  }
  sendRaw(obj);
}

function flushStreams() {
  for (const name of ['stdout', 'stderr']) {
    const text = streams[name].flush();
    if (text.length) sendRaw({ type: name, text });
  }
}

// An event too big for one line is split or cut (sandpit_limit.js).
function sendRaw(obj) {
  for (const buf of limit.lines(obj)) writeAll(buf);
}

function writeAll(buf) {
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(fd, buf, off, buf.length - off);
    } catch (e) {
      if (e.code !== 'EAGAIN') throw e;
      Atomics.wait(sleepCell, 0, 0, 1);
    }
  }
}

function streamWrite(name) {
  return function (chunk, encoding, cb) {
    if (active) {
      const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      if (text.length) send({ type: name, text });
    }
    if (typeof encoding === 'function') encoding();
    else if (typeof cb === 'function') cb();
    return true;
  };
}

function bundle(v) {
  const d = { text: util.inspect(v, { depth: 4, colors: false }) };
  if (v !== null && typeof v === 'object' &&
      (Array.isArray(v) || Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null)) {
    try {
      const s = JSON.stringify(v);
      if (s !== undefined) d.json = JSON.parse(s);
    } catch (e) { /* not JSON */ }
  }
  return d;
}

function errorEvent(e) {
  if (e instanceof Error || (e && typeof e === 'object' && 'stack' in e)) {
    // The frames below the cell are this driver's and node's vm: not the user's.
    const lines = String(e.stack || '').split('\n');
    const cut = lines.findIndex((l) => /\(node:vm:|at Script\.runInThisContext|javascript\.js:/.test(l));
    const tb = (cut > 0 ? lines.slice(0, cut) : lines).join('\n');
    const name = e.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED' ? 'KeyboardInterrupt' : String(e.name || 'Error');
    return { type: 'error', name, value: String(e.message || ''), traceback: tb };
  }
  return { type: 'error', name: 'Error', value: 'Uncaught ' + util.inspect(e), traceback: '' };
}

// typescript.js sets it: the cell's source to JavaScript, or throws.
let transform = null;

async function execute(code, n) {
  let src = transform ? transform(code, n) : code;
  let wrapped = false;
  if (processTopLevelAwait && /\bawait\b/.test(src)) {
    const w = processTopLevelAwait(src);
    if (w !== null) {
      src = w;
      wrapped = true;
    }
  }
  let value;
  const script = new vm.Script(src, { filename: `<cell-${n}>` });
  value = script.runInThisContext({ breakOnSigint: true, displayErrors: false });
  if (wrapped) {
    const interrupted = new Promise((resolve, reject) => {
      interrupt = () => reject(Object.assign(new Error('Execution interrupted'), { name: 'KeyboardInterrupt' }));
    });
    try {
      const r = await Promise.race([value, interrupted]);
      value = r ? r.value : undefined;
    } finally {
      interrupt = null;
    }
  }
  return value;
}

async function run(req) {
  count += 1;
  active = true;
  send({ type: 'number_of_executions', execution_count: count });
  const secretEnv = req.secret_env || {};
  const env = Object.assign({}, req.env || {}, secretEnv);
  setSecrets(Object.values(secretEnv));
  const saved = {};
  for (const k of Object.keys(env)) {
    saved[k] = Object.prototype.hasOwnProperty.call(process.env, k) ? process.env[k] : undefined;
    process.env[k] = env[k];
  }
  try {
    const value = await execute(String(req.code || ''), count);
    if (value !== undefined) send(Object.assign({ type: 'result' }, bundle(value), { is_main_result: true }));
  } catch (e) {
    send(errorEvent(e));
  } finally {
    for (const k of Object.keys(saved)) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  }
  active = false;
  send({ type: 'end_of_execution' });
  setSecrets([]);
}

function main(options) {
  transform = (options && options.transform) || null;
  const sock = net.createConnection(sockPath);
  sock.on('connect', () => {
    fd = sock._handle.fd;
    process.stdout.write = streamWrite('stdout');
    process.stderr.write = streamWrite('stderr');
    globalThis.require = Module.createRequire(process.cwd() + '/');
    globalThis.display = (...objs) => {
      for (const o of objs) send(Object.assign({ type: 'result' }, bundle(o), { is_main_result: false }));
    };
    // Async errors of user code must not end the kernel.
    process.on('uncaughtException', (e) => process.stderr.write('Uncaught ' + (e && e.stack ? e.stack : util.inspect(e)) + '\n'));
    process.on('unhandledRejection', (e) => process.stderr.write('Unhandled rejection: ' + (e && e.stack ? e.stack : util.inspect(e)) + '\n'));
    process.on('SIGINT', () => { if (interrupt) interrupt(); });
    send({ type: 'hello', token, pid: process.pid, cwd: process.cwd() });
  });
  let buf = '';
  let queue = Promise.resolve();
  sock.setEncoding('utf8');
  sock.on('data', (chunk) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const req = JSON.parse(line);
      queue = queue.then(() => run(req));
    }
  });
  sock.on('end', () => process.exit(0));
  sock.on('error', () => process.exit(1));
}

if (require.main === module) main();
module.exports = { main };
