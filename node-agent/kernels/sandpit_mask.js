// Secret masking for the JavaScript kernel (docs/code-interpreter.md, "Secrets").
// The same semantics as sandpit-init's masker (node-agent/init/mask.c) and
// sandpit_mask.py, on strings: every occurrence of a secret value becomes "***",
// the longest value wins at the leftmost position, and the end of a stream chunk
// that could still become a value (a proper prefix of one) is held back until
// the next chunk decides or the stream is flushed.
'use strict';

const REPLACEMENT = '***';
const NAMES_VAR = 'SANDPIT_SECRET_NAMES';
// Base64 of binary data: the masker cannot see a value in it, and masking would
// only corrupt the image.
const BINARY_KEYS = new Set(['png', 'jpeg', 'pdf']);

// The values of the names the agent passed in SANDPIT_SECRET_NAMES (a JSON
// array), from this process's environment. The variable itself is removed; the
// secrets stay in process.env for the user's code.
function sandboxValues() {
  const raw = process.env[NAMES_VAR] || '';
  delete process.env[NAMES_VAR];
  let names = [];
  try {
    names = raw ? JSON.parse(raw) : [];
  } catch (e) {
    names = [];
  }
  if (!Array.isArray(names)) return [];
  return names.filter((n) => typeof n === 'string' && process.env[n]).map((n) => process.env[n]);
}

function escapeRe(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

class Values {
  constructor(values) {
    this.values = [...new Set(values.filter((v) => typeof v === 'string' && v.length))]
      .sort((a, b) => b.length - a.length);
    this.maxlen = this.values.length ? this.values[0].length : 0;
    // JS alternation takes the first alternative that matches: longest first
    // gives leftmost-longest.
    this.rx = this.values.length ? new RegExp(this.values.map(escapeRe).join('|'), 'g') : null;
  }

  // Whether tail is a proper prefix of a value (a longer value may still match).
  partial(tail) {
    return this.values.some((v) => v.length > tail.length && v.startsWith(tail));
  }

  mask(s) {
    return this.rx ? s.replace(this.rx, REPLACEMENT) : s;
  }

  // Masks every string in a JSON-able value, object keys included.
  maskObj(obj) {
    if (!this.rx) return obj;
    if (typeof obj === 'string') return this.mask(obj);
    if (Array.isArray(obj)) return obj.map((x) => this.maskObj(x));
    if (obj !== null && typeof obj === 'object') {
      const out = {};
      for (const [k, v] of Object.entries(obj)) out[this.mask(k)] = BINARY_KEYS.has(k) ? v : this.maskObj(v);
      return out;
    }
    return obj;
  }
}

// One output stream's masker: feed() chunks, flush() at the stream's end.
class Stream {
  constructor(values) {
    this.values = values;
    this.held = '';
  }

  feed(text, final = false) {
    const vals = this.values;
    if (!vals.rx) return text;
    const buf = this.held + text;
    this.held = '';
    const n = buf.length;
    // Below limit every value fits in what is there: no partial match possible.
    const limit = final ? n : Math.max(0, n - vals.maxlen + 1);
    let out = '';
    let i = 0;
    for (;;) {
      vals.rx.lastIndex = i;
      const m = vals.rx.exec(buf);
      const s = m ? m.index : n;
      // A partial match at s beats a full one there (a longer value may follow).
      for (let j = Math.max(i, limit); j < Math.min(s + 1, n); j++) {
        if (vals.partial(buf.slice(j))) {
          this.held = buf.slice(j);
          return out + buf.slice(i, j);
        }
      }
      if (!m) return out + buf.slice(i);
      out += buf.slice(i, s) + REPLACEMENT;
      i = s + m[0].length;
    }
  }

  flush() {
    return this.feed('', true);
  }
}

module.exports = { Values, Stream, sandboxValues };
