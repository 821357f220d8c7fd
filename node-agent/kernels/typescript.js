// sandpit TypeScript kernel: the JavaScript kernel (javascript.js) with each
// cell transpiled first by the typescript module's transpileModule. Started as
//     node --expose-internals /.sandpit-kernels/typescript.js SOCKET
// Types are erased, not checked (a type error does not stop a run, as with
// ts-node --transpile-only); a syntax error is an error event and runs
// nothing. The result runs in the same persistent global scope as JavaScript,
// top-level await included. Needs the typescript module where node finds it
// (Debian's node-typescript puts it in /usr/share/nodejs: looked for there too).
'use strict';
const ts = requireTypescript();
const kernel = require('./javascript.js');

const compilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.CommonJS,
  esModuleInterop: true,
  alwaysStrict: false,
  sourceMap: false,
};

// Where node looks, then where Debian's node-typescript puts it (a Node
// not from Debian does not search /usr/share/nodejs).
function requireTypescript() {
  for (const name of ['typescript', '/usr/share/nodejs/typescript', '/usr/lib/nodejs/typescript']) {
    try {
      return require(name);
    } catch (e) {
      if (e.code !== 'MODULE_NOT_FOUND') throw e;
    }
  }
  process.stderr.write("this sandbox's template has no TypeScript (the typescript module is not installed; Debian: node-typescript)\n");
  process.exit(1);
}

function syntaxError(diags, n) {
  const text = (d) => ts.flattenDiagnosticMessageText(d.messageText, '\n');
  const lines = diags.map((d) => {
    let where = `<cell-${n}>`;
    if (d.file && d.start !== undefined) {
      const p = d.file.getLineAndCharacterOfPosition(d.start);
      where += `:${p.line + 1}:${p.character + 1}`;
    }
    return `${where} - error TS${d.code}: ${text(d)}`;
  });
  const e = new SyntaxError(text(diags[0]));
  e.stack = `SyntaxError: ${text(diags[0])}\n${lines.join('\n')}`;
  return e;
}

// A cell with import or export is a module to TypeScript: its CommonJS output
// starts with a "use strict" and an exports marker, which would make the cell
// strict and need an `exports`; and its imports become `const x_1 =
// require(...)`, which a second run of the same import would redeclare in
// the shared global scope: they become `var`.
function transform(code, n) {
  const out = ts.transpileModule(code, { fileName: `cell-${n}.ts`, reportDiagnostics: true, compilerOptions });
  const errors = (out.diagnostics || []).filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (errors.length) throw syntaxError(errors, n);
  return out.outputText
    .replace(/^"use strict";\n/, '')
    .replace(/^Object\.defineProperty\(exports, "__esModule", \{ value: true \}\);\n/m, '')
    .replace(/^const (\w+) = ((?:__importDefault|__importStar)\()?require\(/gm, 'var $1 = $2require(')
    .replace(/\n\/\/# sourceMappingURL=.*$/, '');
}

globalThis.exports = globalThis.exports || {};
kernel.main({ transform });
