// Reads a whole table back with the official Tablestore JS SDK and prints one JSON object per
// row, in primary-key order: {"<pk column>":..., ..., "<attribute>":...}. INTEGER values are
// printed as {"int":"<decimal>"} so 64-bit values stay exact; DOUBLE values as JSON numbers
// (the shortest text that reads back as the same double); STRING and BOOLEAN as themselves.
// Usage: node readback.js TABLE PKCOL[,PKCOL...]
// Environment: SG_TSEMU_ENDPOINT, SG_TSEMU_INSTANCE, SG_TSEMU_AK_ID, SG_TSEMU_AK_SECRET.
'use strict';

const { TableStore, clientFromEnv } = require('./common');

if (process.argv.length < 4) {
  console.error('usage: node readback.js TABLE PKCOL[,PKCOL...]');
  process.exit(2);
}
const table = process.argv[2];
const pkCols = process.argv[3].split(',');

const client = clientFromEnv();

function show(v) {
  if (v && typeof v === 'object' && typeof v.toNumber === 'function' && !Buffer.isBuffer(v))
    return { int: v.toString() };
  if (Buffer.isBuffer(v))
    return { hex: v.toString('hex') };
  return v;
}

async function main() {
  let start = pkCols.map((c) => ({ [c]: TableStore.INF_MIN }));
  const end = pkCols.map((c) => ({ [c]: TableStore.INF_MAX }));
  while (start) {
    const page = await client.getRange({
      tableName: table, direction: TableStore.Direction.FORWARD, maxVersions: 1,
      inclusiveStartPrimaryKey: start, exclusiveEndPrimaryKey: end, limit: 1000,
    });
    for (const row of page.rows || []) {
      if (!row.primaryKey)
        continue;
      const out = {};
      for (const c of row.primaryKey)
        out[c.name] = show(c.value);
      for (const a of row.attributes || [])
        if (!(a.columnName in out))
          out[a.columnName] = show(a.columnValue);
      console.log(JSON.stringify(out));
    }
    start = page.nextStartPrimaryKey
      ? page.nextStartPrimaryKey.map((c) => ({ [c.name]: c.value })) : null;
  }
}

main().catch((e) => {
  console.error('readback failed: ' + (e && (e.message || e.code) || e));
  process.exit(1);
});
