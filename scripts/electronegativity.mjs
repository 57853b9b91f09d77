// Electronegativity (Doyensec's Electron security scanner) over the app's sources, as CI runs it.
// Fails on any finding above LOW that is not suppressed in the code with `eng-disable CHECK_ID`
// next to a comment saying why. The scanner cannot fetch Electron's release list offline, so the
// installed Electron version is given explicitly.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const electronVersion = require('electron/package.json').version;
const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'eneg-')), 'findings.csv');
const cli = require.resolve('@doyensec/electronegativity/dist/index.js');
const r = spawnSync(process.execPath, [cli, '-i', 'src', '-r', '-v', 'false', '-e', electronVersion, '-o', out], { encoding: 'utf8' });
if (!fs.existsSync(out)) {
  console.error(r.stdout, r.stderr);
  console.error('electronegativity: the scanner wrote no report');
  process.exit(1);
}

/** RFC 4180 rows: quoted fields may hold commas, quotes ("") and line breaks. */
function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') row.push(field.trim()), (field = '');
    else if (c === '\n') row.push(field.trim()), rows.push(row), (row = []), (field = '');
    else if (c !== '\r') field += c;
  }
  if (field || row.length) row.push(field.trim()), rows.push(row);
  return rows;
}

const [header, ...rows] = parseCsv(fs.readFileSync(out, 'utf8'));
const col = (name) => header.indexOf(name);
const findings = rows.filter((r) => r.length > 1).map((r) => ({ id: r[col('issue')], severity: r[col('severity')].toUpperCase(), file: r[col('filename')], at: r[col('location')], what: r[col('description')] }));
const blocking = findings.filter((f) => f.severity !== 'LOW' && f.severity !== 'INFORMATIONAL');
for (const f of findings) console.log(`${f.severity.padEnd(6)} ${f.id} ${f.file}:${f.at} ${f.what}`);
console.log(`electronegativity ${electronVersion ? `(Electron ${electronVersion})` : ''}: ${findings.length} finding(s), ${blocking.length} above LOW`);
process.exit(blocking.length ? 1 : 0);
