// The official Tablestore JS SDK (npm `tablestore`, pinned in package.json) as the client of a
// running streamgate-tablestore-emu. Reads the endpoint and credentials from the environment:
//   SG_TSEMU_ENDPOINT (http://127.0.0.1:PORT), SG_TSEMU_INSTANCE, SG_TSEMU_AK_ID, SG_TSEMU_AK_SECRET
// and an optional table name prefix SG_TSEMU_TABLE (default "sdk"). Prints one line per check
// and exits non-zero on the first failure.
'use strict';

const assert = require('assert');
const { TableStore, clientFromEnv } = require('./common');

const Long = TableStore.Long;
const client = clientFromEnv();
const table = process.env.SG_TSEMU_TABLE || 'sdk';
const ignore = new TableStore.Condition(TableStore.RowExistenceExpectation.IGNORE, null);
const expectExist = new TableStore.Condition(TableStore.RowExistenceExpectation.EXPECT_EXIST, null);
const expectNotExist =
  new TableStore.Condition(TableStore.RowExistenceExpectation.EXPECT_NOT_EXIST, null);

let step = 0;
function ok(what) {
  step++;
  console.log('ok ' + step + ' - ' + what);
}

// Attribute columns of a decoded row as {name: value}, newest version only. INTEGER values
// arrive as int64 objects: they are shown as decimal strings so they compare exactly.
function attrs(row) {
  const out = {};
  for (const a of row.attributes || []) {
    if (a.columnName in out)
      continue;
    let v = a.columnValue;
    if (v && typeof v === 'object' && typeof v.toNumber === 'function' && !Buffer.isBuffer(v))
      v = 'int:' + v.toString();
    else if (Buffer.isBuffer(v))
      v = 'hex:' + v.toString('hex');
    out[a.columnName] = v;
  }
  return out;
}

function pkOf(row) {
  return row.primaryKey.map((c) => {
    const v = c.value;
    if (v && typeof v === 'object' && typeof v.toNumber === 'function')
      return c.name + '=' + v.toString();
    return c.name + '=' + v;
  }).join(',');
}

const key = (id, name) => [{ id: Long.fromNumber(id) }, { name: name }];

async function expectError(promise, code, what) {
  let err = null;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  assert.ok(err, what + ': expected an error');
  // The JS SDK does not parse error bodies: `code` is the HTTP status and `message` holds the
  // raw Error message bytes (PROTOCOL.md quirk 4), which contain the Tablestore code.
  assert.strictEqual(err.code, code.status, what + ': status ' + err.code);
  assert.ok(String(err.message).includes(code.name), what + ': message ' + err.message);
  ok(what + ' -> ' + code.status + ' ' + code.name);
}

async function main() {
  await client.createTable({
    tableMeta: {
      tableName: table,
      primaryKey: [{ name: 'id', type: 'INTEGER' }, { name: 'name', type: 'STRING' }],
    },
    reservedThroughput: { capacityUnit: { read: 0, write: 0 } },
    tableOptions: { timeToLive: -1, maxVersions: 2 },
  });
  ok('createTable');

  const list = await client.listTable({});
  assert.ok(list.tableNames.includes(table), 'listTable: ' + JSON.stringify(list.tableNames));
  ok('listTable');

  const desc = await client.describeTable({ tableName: table });
  assert.strictEqual(desc.tableMeta.tableName, table);
  assert.deepStrictEqual(desc.tableMeta.primaryKey.map((p) => [p.name, p.type]),
                         [['id', 1], ['name', 2]]);
  assert.strictEqual(desc.tableOptions.maxVersions, 2);
  assert.strictEqual(desc.tableOptions.timeToLive, -1);
  ok('describeTable');

  await expectError(client.createTable({
    tableMeta: { tableName: table, primaryKey: [{ name: 'id', type: 'INTEGER' }] },
    reservedThroughput: { capacityUnit: { read: 0, write: 0 } },
    tableOptions: { timeToLive: -1, maxVersions: 1 },
  }), { status: 409, name: 'OTSObjectAlreadyExist' }, 'createTable twice');

  // putRow: every attribute type, RT_PK return content.
  const put = await client.putRow({
    tableName: table,
    condition: expectNotExist,
    primaryKey: key(1, 'a'),
    attributeColumns: [
      { s: 'hello' }, { n: Long.fromNumber(42) }, { d: 2.5 }, { b: true },
      { bin: Buffer.from([0, 1, 254, 255]) }, { big: Long.fromString('-9223372036854775808') },
    ],
    returnContent: { returnType: TableStore.ReturnType.Primarykey },
  });
  assert.strictEqual(pkOf(put.row), 'id=1,name=a');
  ok('putRow with EXPECT_NOT_EXIST and RT_PK');

  let got = await client.getRow({ tableName: table, primaryKey: key(1, 'a'), maxVersions: 1 });
  assert.strictEqual(pkOf(got.row), 'id=1,name=a');
  assert.deepStrictEqual(attrs(got.row), {
    b: true, big: 'int:-9223372036854775808', bin: 'hex:0001feff', d: 2.5, n: 'int:42',
    s: 'hello',
  });
  ok('getRow returns every value exactly');

  await expectError(client.putRow({
    tableName: table, condition: expectNotExist, primaryKey: key(1, 'a'),
    attributeColumns: [{ s: 'again' }],
  }), { status: 403, name: 'OTSConditionCheckFail' }, 'putRow EXPECT_NOT_EXIST on an existing row');

  // updateRow: all four operations.
  await client.putRow({
    tableName: table, condition: ignore, primaryKey: key(2, 'b'),
    attributeColumns: [{ keep: 'x' }, { gone: 'y' }, { ver: 'old', timestamp: Long.fromNumber(1000) },
                       { cnt: Long.fromNumber(10) }],
  });
  await client.putRow({
    tableName: table, condition: ignore, primaryKey: key(2, 'b'),
    attributeColumns: [{ keep: 'x' }, { gone: 'y' }, { ver: 'old', timestamp: Long.fromNumber(1000) },
                       { ver: 'new', timestamp: Long.fromNumber(2000) },
                       // An explicit old timestamp: the INCREMENT below adds a newer version
                       // instead of replacing one written in the same millisecond.
                       { cnt: Long.fromNumber(10), timestamp: Long.fromNumber(1500) }],
  });
  await client.updateRow({
    tableName: table, condition: expectExist, primaryKey: key(2, 'b'),
    updateOfAttributeColumns: [
      { PUT: [{ added: 'z' }] },
      { DELETE: [{ ver: Long.fromNumber(2000) }] },
      { DELETE_ALL: ['gone'] },
      { INCREMENT: [{ cnt: Long.fromNumber(5) }] },
    ],
  });
  got = await client.getRow({ tableName: table, primaryKey: key(2, 'b'), maxVersions: 1 });
  assert.deepStrictEqual(attrs(got.row), { added: 'z', cnt: 'int:15', keep: 'x', ver: 'old' });
  ok('updateRow PUT, DELETE (one version), DELETE_ALL, INCREMENT');

  got = await client.getRow({
    tableName: table, primaryKey: key(2, 'b'), maxVersions: 2, columnsToGet: ['cnt'],
  });
  const cnt = got.row.attributes.map((a) => a.columnValue.toString());
  assert.deepStrictEqual(cnt, ['15', '10']);
  ok('getRow columnsToGet with two versions, newest first');

  await expectError(client.updateRow({
    tableName: table, condition: expectExist, primaryKey: key(99, 'zz'),
    updateOfAttributeColumns: [{ PUT: [{ a: 'b' }] }],
  }), { status: 403, name: 'OTSConditionCheckFail' }, 'updateRow EXPECT_EXIST on a missing row');

  // batchWriteRow: PUT, UPDATE, DELETE and one failing row.
  const rows = [];
  for (let i = 10; i < 15; i++) {
    rows.push({
      type: 'PUT', condition: ignore, primaryKey: key(i, 'r'),
      attributeColumns: [{ v: Long.fromNumber(i * 100) }],
      returnContent: { returnType: TableStore.ReturnType.Primarykey },
    });
  }
  rows.push({
    type: 'UPDATE', condition: expectExist, primaryKey: key(1, 'a'),
    attributeColumns: [{ PUT: [{ s: 'updated' }] }],
  });
  rows.push({ type: 'DELETE', condition: expectExist, primaryKey: key(2, 'b') });
  rows.push({
    type: 'PUT', condition: expectExist, primaryKey: key(77, 'missing'),
    attributeColumns: [{ v: 'never' }],
  });
  const bwr = await client.batchWriteRow({ tables: [{ tableName: table, rows: rows }] });
  assert.strictEqual(bwr.tables.length, rows.length);
  for (let i = 0; i < 7; i++)
    assert.strictEqual(bwr.tables[i].isOk, true, 'row ' + i + ': ' + bwr.tables[i].errorMessage);
  assert.strictEqual(pkOf(bwr.tables[0]), 'id=10,name=r');
  assert.strictEqual(bwr.tables[7].isOk, false);
  assert.strictEqual(bwr.tables[7].errorCode, 'OTSConditionCheckFail');
  assert.strictEqual(bwr.failedRows ? bwr.failedRows.length : 1, 1);
  ok('batchWriteRow: 7 rows ok, the EXPECT_EXIST row on a missing key fails');

  got = await client.getRow({ tableName: table, primaryKey: key(2, 'b'), maxVersions: 1 });
  assert.ok(!got.row.primaryKey, 'row 2 should be deleted');
  got = await client.getRow({ tableName: table, primaryKey: key(1, 'a'), maxVersions: 1 });
  assert.strictEqual(attrs(got.row).s, 'updated');
  got = await client.getRow({ tableName: table, primaryKey: key(77, 'missing'), maxVersions: 1 });
  assert.ok(!got.row.primaryKey, 'the failed row must not be written');
  ok('batchWriteRow effects read back with getRow');

  // getRange forward in pages of 2, then backward.
  const fwd = [];
  let start = [{ id: TableStore.INF_MIN }, { name: TableStore.INF_MIN }];
  let pages = 0;
  while (start) {
    const page = await client.getRange({
      tableName: table, direction: TableStore.Direction.FORWARD, maxVersions: 1, limit: 2,
      inclusiveStartPrimaryKey: start,
      exclusiveEndPrimaryKey: [{ id: TableStore.INF_MAX }, { name: TableStore.INF_MAX }],
    });
    for (const r of page.rows)
      fwd.push(pkOf(r) + ':' + JSON.stringify(attrs(r).v || null));
    pages++;
    start = page.nextStartPrimaryKey
      ? page.nextStartPrimaryKey.map((c) => ({ [c.name]: c.value })) : null;
  }
  assert.deepStrictEqual(fwd, [
    'id=1,name=a:null', 'id=10,name=r:"int:1000"', 'id=11,name=r:"int:1100"',
    'id=12,name=r:"int:1200"', 'id=13,name=r:"int:1300"', 'id=14,name=r:"int:1400"',
  ]);
  assert.strictEqual(pages, 3);
  ok('getRange FORWARD, 3 pages of at most 2 rows');

  const back = await client.getRange({
    tableName: table, direction: TableStore.Direction.BACKWARD, maxVersions: 1,
    inclusiveStartPrimaryKey: [{ id: Long.fromNumber(13) }, { name: 'r' }],
    exclusiveEndPrimaryKey: [{ id: Long.fromNumber(10) }, { name: 'r' }],
  });
  assert.deepStrictEqual(back.rows.map(pkOf), ['id=13,name=r', 'id=12,name=r', 'id=11,name=r']);
  assert.strictEqual(back.nextStartPrimaryKey, null);
  ok('getRange BACKWARD from an inclusive start to an exclusive end');

  await client.deleteRow({ tableName: table, condition: ignore, primaryKey: key(1, 'a') });
  got = await client.getRow({ tableName: table, primaryKey: key(1, 'a'), maxVersions: 1 });
  assert.ok(!got.row.primaryKey);
  ok('deleteRow');

  await expectError(client.getRow({ tableName: 'no_such_table', primaryKey: key(1, 'a'),
                                    maxVersions: 1 }),
                    { status: 404, name: 'OTSObjectNotExist' }, 'getRow on a missing table');

  await client.deleteTable({ tableName: table });
  const after = await client.listTable({});
  assert.ok(!after.tableNames.includes(table));
  ok('deleteTable');
}

main().then(() => {
  console.log('all ' + step + ' checks passed');
}, (e) => {
  console.error('FAILED after ' + step + ' checks: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
