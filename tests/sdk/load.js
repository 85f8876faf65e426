// Writes COUNT result-shaped rows into a Tablestore endpoint with the official JS SDK: table
// `mem` with PK (key STRING, window_start INTEGER) and seven attributes, 200 rows per
// BatchWriteRow, 4 requests in flight. Used by bench/tsemu-memory.
// Usage: node tests/sdk/load.js COUNT
// Environment: SG_TSEMU_ENDPOINT, SG_TSEMU_INSTANCE, SG_TSEMU_AK_ID, SG_TSEMU_AK_SECRET.
'use strict';

const { TableStore, clientFromEnv } = require('./common');

const count = parseInt(process.argv[2], 10);
const client = clientFromEnv();
const Long = TableStore.Long;

function call(method, params) {
  return new Promise((resolve, reject) => {
    client[method](params, (err, data) => (err ? reject(err) : resolve(data)));
  });
}

function row(i) {
  const ws = 1700000000000 + Math.floor(i / 1000) * 60000;
  return {
    type: 'PUT',
    condition: new TableStore.Condition(TableStore.RowExistenceExpectation.IGNORE, null),
    primaryKey: [{ key: 'user-' + String(i % 1000).padStart(6, '0') }, { window_start: Long.fromNumber(ws) }],
    attributeColumns: [
      { count: Long.fromNumber(i % 97) },
      { window_end: Long.fromNumber(ws + 60000) },
      { sum: i * 1.5 },
      { min: 0.25 },
      { max: i * 2.5 },
      { first_ts: Long.fromNumber(ws + 17) },
      { last_ts: Long.fromNumber(ws + 59000) },
    ],
  };
}

async function main() {
  await call('createTable', {
    tableMeta: { tableName: 'mem', primaryKey: [{ name: 'key', type: 'STRING' }, { name: 'window_start', type: 'INTEGER' }] },
    reservedThroughput: { capacityUnit: { read: 0, write: 0 } },
    tableOptions: { timeToLive: -1, maxVersions: 1 },
  });
  let next = 0;
  async function worker() {
    while (next < count) {
      const rows = [];
      for (let k = 0; k < 200 && next < count; k++) rows.push(row(next++));
      const r = await call('batchWriteRow', { tables: [{ tableName: 'mem', rows }] });
      if (r.tables.some((t) => !t.isOk)) throw new Error('a row failed');
    }
  }
  await Promise.all([worker(), worker(), worker(), worker()]);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
