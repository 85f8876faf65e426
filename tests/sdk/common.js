// What the scripts here share: the official SDK (with a clear message when it is not installed)
// and a client for the endpoint and credentials in the environment:
//   SG_TSEMU_ENDPOINT (http://127.0.0.1:PORT), SG_TSEMU_INSTANCE, SG_TSEMU_AK_ID, SG_TSEMU_AK_SECRET.
'use strict';

const path = require('path');

let TableStore;
try {
  TableStore = require('tablestore');
} catch (e) {
  console.error('the tablestore SDK is not installed in ' + path.join(__dirname, 'node_modules') +
                ': run `npm ci --prefix tests/sdk` from the repository root (' + e.message + ')');
  process.exit(3);
}

function env(name) {
  const v = process.env[name];
  if (!v) {
    console.error(name + ' is not set');
    process.exit(2);
  }
  return v;
}

// A client that does not retry, so every answer the emulator gives is seen as it is.
function clientFromEnv() {
  return new TableStore.Client({
    accessKeyId: env('SG_TSEMU_AK_ID'),
    secretAccessKey: env('SG_TSEMU_AK_SECRET'),
    endpoint: env('SG_TSEMU_ENDPOINT'),
    instancename: env('SG_TSEMU_INSTANCE'),
    maxRetries: 0,
  });
}

module.exports = { TableStore, clientFromEnv };
