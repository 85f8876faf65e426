// Secondary indexes and BatchGetRow through the official Tablestore JS SDK against a running
// streamgate-tablestore-emu, on a table shaped like streamgate's window results: PK (key,
// window_start), predefined columns shard, count and window_end, and the global index
// <t>_by_time with PK (shard, window_start, key) carrying count and window_end. Environment as
// for interop.js (SG_TSEMU_ENDPOINT, SG_TSEMU_INSTANCE, SG_TSEMU_AK_ID, SG_TSEMU_AK_SECRET,
// optional SG_TSEMU_TABLE, default "res"). A global index follows its table asynchronously
// (the emulator's --index-lag), so reads of the index wait until it shows what was written.
// Prints one line per check and exits non-zero on the first failure.
'use strict';

const assert = require('assert');
const { TableStore, clientFromEnv } = require('./common');

const Long = TableStore.Long;
const client = clientFromEnv();
const table = process.env.SG_TSEMU_TABLE || 'res';
const byTime = table + '_by_time';
const ignore = new TableStore.Condition(TableStore.RowExistenceExpectation.IGNORE, null);
const DCT_INTEGER = 1; // numbers, not names: the SDK sends a name as 0 (PROTOCOL.md 7.10)

let step = 0;
function ok(what) {
  step++;
  console.log('ok ' + step + ' - ' + what);
}

function show(v) {
  if (v && typeof v === 'object' && typeof v.toNumber === 'function' && !Buffer.isBuffer(v))
    return v.toString();
  return String(v);
}

// A row as "pk1,pk2,... attr=v attr=v" (attributes sorted by name).
function text(row) {
  if (!row || !row.primaryKey)
    return '-';
  const pk = row.primaryKey.map((c) => show(c.value)).join(',');
  const at = (row.attributes || []).map((a) => a.columnName + '=' + show(a.columnValue)).sort();
  return [pk].concat(at).join(' ');
}

const W = 60000;
const T0 = 1700000000000;
// key, shard, window index, count
const rows = [
  ['k1', 0, 0, 3], ['k2', 1, 0, 5], ['k3', 1, 0, 7],
  ['k1', 0, 1, 4], ['k2', 1, 1, 6], ['k3', 1, 2, 8],
];

function putRow(key, shard, w, count) {
  return client.putRow({
    tableName: table,
    condition: ignore,
    primaryKey: [{ key: key }, { window_start: Long.fromNumber(T0 + w * W) }],
    attributeColumns: [
      { shard: Long.fromNumber(shard) }, { count: Long.fromNumber(count) },
      { window_end: Long.fromNumber(T0 + (w + 1) * W) },
    ],
  });
}

// Every index row of shard `shard` with window_start in [from, to), in `direction`.
async function byShard(shard, from, to, direction) {
  const lo = [{ shard: Long.fromNumber(shard) }, { window_start: Long.fromNumber(from) },
              { key: TableStore.INF_MIN }];
  const hi = [{ shard: Long.fromNumber(shard) }, { window_start: Long.fromNumber(to) },
              { key: TableStore.INF_MIN }];
  const back = direction === TableStore.Direction.BACKWARD;
  const out = [];
  let start = back ? hi : lo;
  while (start) {
    const page = await client.getRange({
      tableName: byTime, direction: direction, maxVersions: 1, limit: 2,
      inclusiveStartPrimaryKey: start, exclusiveEndPrimaryKey: back ? lo : hi,
    });
    for (const r of page.rows)
      out.push(text(r));
    start = page.nextStartPrimaryKey
      ? page.nextStartPrimaryKey.map((c) => ({ [c.name]: c.value })) : null;
  }
  return out;
}

// Waits (up to 10 s) until `read` gives `want`, as a reader of an asynchronous index does.
async function eventually(read, want, what) {
  const until = Date.now() + 10000;
  let got;
  for (;;) {
    got = await read();
    if (JSON.stringify(got) === JSON.stringify(want))
      break;
    if (Date.now() > until)
      assert.deepStrictEqual(got, want, what);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  ok(what);
}

async function main() {
  await client.createTable({
    tableMeta: {
      tableName: table,
      primaryKey: [{ name: 'key', type: 'STRING' }, { name: 'window_start', type: 'INTEGER' }],
      definedColumn: [{ name: 'shard', type: DCT_INTEGER }, { name: 'count', type: DCT_INTEGER },
                      { name: 'window_end', type: DCT_INTEGER }],
    },
    reservedThroughput: { capacityUnit: { read: 0, write: 0 } },
    tableOptions: { timeToLive: -1, maxVersions: 1 },
    indexMetas: [{
      name: byTime, primaryKey: ['shard', 'window_start', 'key'],
      definedColumn: ['count', 'window_end'],
      indexUpdateMode: TableStore.IndexUpdateMode.IUM_ASYNC_INDEX,
      indexType: TableStore.IndexType.IT_GLOBAL_INDEX,
    }],
  });
  ok('createTable with a predefined column and index ' + byTime);

  const desc = await client.describeTable({ tableName: table });
  assert.deepStrictEqual(desc.tableMeta.definedColumn.map((c) => [c.name, c.type]),
                         [['shard', 1], ['count', 1], ['window_end', 1]]);
  assert.strictEqual(desc.indexMetas.length, 1);
  assert.strictEqual(desc.indexMetas[0].name, byTime);
  assert.deepStrictEqual(desc.indexMetas[0].primaryKey, ['shard', 'window_start', 'key']);
  assert.deepStrictEqual(desc.indexMetas[0].definedColumn, ['count', 'window_end']);
  ok('describeTable answers the predefined columns and the index');

  for (const r of rows)
    await putRow(r[0], r[1], r[2], r[3]);
  ok('putRow ' + rows.length + ' result rows');

  const t = (w) => String(T0 + w * W);
  const e = (w) => String(T0 + (w + 1) * W);
  await eventually(() => byShard(1, T0, T0 + 2 * W, TableStore.Direction.FORWARD), [
    '1,' + t(0) + ',k2 count=5 window_end=' + e(0),
    '1,' + t(0) + ',k3 count=7 window_end=' + e(0),
    '1,' + t(1) + ',k2 count=6 window_end=' + e(1),
  ], 'getRange on the index: shard 1, two windows, FORWARD in pages of 2');
  await eventually(() => byShard(1, T0, T0 + 3 * W, TableStore.Direction.BACKWARD), [
    '1,' + t(2) + ',k3 count=8 window_end=' + e(2),
    '1,' + t(1) + ',k2 count=6 window_end=' + e(1),
    '1,' + t(0) + ',k3 count=7 window_end=' + e(0),
    '1,' + t(0) + ',k2 count=5 window_end=' + e(0),
  ], 'getRange on the index: shard 1, newest first (BACKWARD)');

  // A result rewritten under another shard moves in the index.
  await putRow('k2', 0, 1, 9);
  await eventually(async () => (await byShard(0, T0, T0 + 3 * W, TableStore.Direction.FORWARD)), [
    '0,' + t(0) + ',k1 count=3 window_end=' + e(0),
    '0,' + t(1) + ',k1 count=4 window_end=' + e(1),
    '0,' + t(1) + ',k2 count=9 window_end=' + e(1),
  ], 'a changed shard moves the index row (new place)');
  assert.deepStrictEqual(await byShard(1, T0 + W, T0 + 2 * W, TableStore.Direction.FORWARD), []);
  ok('a changed shard moves the index row (old place empty)');

  let err = null;
  try {
    await client.putRow({
      tableName: byTime, condition: ignore,
      primaryKey: [{ shard: Long.fromNumber(0) }, { window_start: Long.fromNumber(T0) },
                   { key: 'x' }],
      attributeColumns: [{ count: Long.fromNumber(1) }],
    });
  } catch (e2) {
    err = e2;
  }
  assert.ok(err && err.code === 400 && String(err.message).includes('OTSParameterInvalid'),
            'putRow on the index: ' + (err && err.message));
  ok('putRow on the index is refused (400 OTSParameterInvalid)');

  const got = await client.batchGetRow({
    tables: [{
      tableName: table, maxVersions: 1,
      primaryKey: [
        [{ key: 'k3' }, { window_start: Long.fromNumber(T0 + 2 * W) }],
        [{ key: 'nope' }, { window_start: Long.fromNumber(T0) }],
        [{ key: 'k1' }, { window_start: Long.fromNumber(T0) }],
      ],
    }],
  });
  assert.strictEqual(got.tables.length, 1);
  assert.deepStrictEqual(got.tables[0].map((r) => r.isOk), [true, true, true]);
  assert.deepStrictEqual(got.tables[0].map(text), [
    'k3,' + t(2) + ' count=8 shard=1 window_end=' + e(2), '-',
    'k1,' + t(0) + ' count=3 shard=0 window_end=' + e(0),
  ]);
  ok('batchGetRow on the table: 3 keys, one missing, in request order');

  // A second index added later over the rows already there, then dropped.
  await client.createIndex({
    mainTableName: table,
    indexMeta: {
      name: table + '_by_key', primaryKey: ['key'], definedColumn: ['count'],
      indexUpdateMode: TableStore.IndexUpdateMode.IUM_ASYNC_INDEX,
      indexType: TableStore.IndexType.IT_GLOBAL_INDEX,
    },
    includeBaseData: true,
  });
  const all = await client.getRange({
    tableName: table + '_by_key', direction: TableStore.Direction.FORWARD, maxVersions: 1,
    inclusiveStartPrimaryKey: [{ key: 'k1' }, { window_start: TableStore.INF_MIN }],
    exclusiveEndPrimaryKey: [{ key: 'k1' }, { window_start: TableStore.INF_MAX }],
  });
  assert.deepStrictEqual(all.rows.map(text),
                         ['k1,' + t(0) + ' count=3', 'k1,' + t(1) + ' count=4']);
  ok('createIndex with includeBaseData indexes the rows already written');
  await client.dropIndex({ mainTableName: table, indexName: table + '_by_key' });
  const after = await client.describeTable({ tableName: table });
  assert.deepStrictEqual(after.indexMetas.map((m) => m.name), [byTime]);
  ok('dropIndex');

  await client.deleteTable({ tableName: table });
  ok('deleteTable');
}

main().then(() => {
  console.log('all ' + step + ' checks passed');
}, (e) => {
  console.error('FAILED after ' + step + ' checks: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
