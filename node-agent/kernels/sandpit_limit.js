// The size limit of one event line, for the JavaScript kernel
// (docs/code-interpreter.md, "Limits"); the same rules as sandpit_limit.py.
// The agent takes lines of at most SANDPIT_CODE_EVENT_MAX bytes (the newline
// included) and drops longer ones. stdout/stderr text too long for one line
// becomes several events; any other event too long is cut: media fields (png,
// ...) and structured ones (json) are dropped, the longest strings are
// shortened and end with a marker saying so, and the event gets
// "truncated": true.
'use strict';

const EVENT_MAX = parseInt(process.env.SANDPIT_CODE_EVENT_MAX || '', 10) || 1048576;
delete process.env.SANDPIT_CODE_EVENT_MAX;
const KEEP = new Set(['type', 'is_main_result', 'execution_count', 'exit_code', 'truncated']);
const MEDIA = new Set(['png', 'jpeg', 'pdf']);

function encode(obj) {
  return Buffer.from(JSON.stringify(obj) + '\n');
}

function marker(shown, total, limit) {
  return `\n[sandpit: truncated: ${shown} of ${total} characters shown; an event is at most ${limit} bytes]`;
}

// The longest prefix of s (about) whose JSON encoding takes <= budget bytes.
function prefixWithin(s, budget) {
  let n = Math.min(s.length, Math.max(budget, 0));
  while (n > 0) {
    const size = Buffer.byteLength(JSON.stringify(s.slice(0, n)));
    if (size <= budget) return s.slice(0, n);
    n = Math.max(0, Math.floor((n * budget) / size) - 16);
  }
  return '';
}

// A stdout/stderr event as events of at most limit bytes each.
function splitText(obj, limit) {
  const step = Math.max(1024, Math.floor((limit - 64) / 12)); // \uXXXX\uXXXX at worst
  const out = [];
  for (let i = 0; i < obj.text.length; i += step) out.push(encode({ type: obj.type, text: obj.text.slice(i, i + step) }));
  return out;
}

// obj cut down so that its line takes at most limit bytes.
function fit(obj, limit) {
  const out = Object.assign({}, obj, { truncated: true });
  for (let round = 0; round < 64; round++) {
    const size = encode(out).length;
    if (size <= limit) return out;
    let key = null;
    let keySize = -1;
    for (const k of Object.keys(out)) {
      if (KEEP.has(k)) continue;
      const sz = Buffer.byteLength(JSON.stringify(out[k]) || '');
      if (sz > keySize) {
        key = k;
        keySize = sz;
      }
    }
    if (key === null) break;
    const v = out[key];
    if (typeof v !== 'string' || MEDIA.has(key) || keySize < 64) {
      delete out[key];
      continue;
    }
    // What the other fields take is theirs only while they fit: a string keeps
    // a quarter of the line at least, and later rounds drop or cut the others
    // (with no floor once the floor stops making progress).
    const slack = Buffer.byteLength(JSON.stringify(marker(0, v.length, limit))) + 16;
    let budget = limit - (size - keySize) - slack;
    const floored = Math.max(budget, Math.floor(limit / 4) - slack);
    if (floored + slack < keySize) budget = floored;
    if (budget < 64) {
      // no room left: drop a field, "text" last
      let drop = key;
      let dropSize = -1;
      for (const k of Object.keys(out)) {
        if (KEEP.has(k) || k === 'text') continue;
        const sz = Buffer.byteLength(JSON.stringify(out[k]) || '');
        if (sz > dropSize) {
          drop = k;
          dropSize = sz;
        }
      }
      delete out[drop];
      continue;
    }
    const head = prefixWithin(v, budget);
    out[key] = head + marker(head.length, v.length, limit);
  }
  return { type: obj.type, truncated: true };
}

// The encoded line(s) of one event, each within the limit.
function lines(obj, limit) {
  limit = limit || EVENT_MAX;
  const data = encode(obj);
  if (data.length <= limit) return [data];
  if ((obj.type === 'stdout' || obj.type === 'stderr') && typeof obj.text === 'string') return splitText(obj, limit);
  return [encode(fit(obj, limit))];
}

module.exports = { lines, EVENT_MAX };
