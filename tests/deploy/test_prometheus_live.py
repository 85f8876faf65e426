#!/usr/bin/env python3
"""The alert rules and the dashboard against a real Prometheus scraping real streamgate processes.

Starts an external mock Kafka cluster (tests/tools/mock_kafka), the Tablestore emulator (with
some busy answers, so rows are retried, fail and reach the dead-letter output), a `gateway`
fed by streamgate-gen (some events late, a few bodies rejected) and an `aggregator` in a
consumer group writing results to the emulator. Then Debian's Prometheus, on 127.0.0.1, with
the scrape jobs of deploy/compose/prometheus.yml pointed at those processes and the rules of
deploy/prometheus/alerts.yml loaded, every second.

Every expression must return data through Prometheus' HTTP API, waited for with a bound:
  - each recording rule's expression, and the series it records;
  - each alerting rule's expression with `bool` after its comparisons (so it returns a 0 or 1
    per series whether or not the alert fires; a renamed metric returns nothing);
  - each dashboard panel's query and template variable query, and its alert annotation
    (StreamgateRecordsFailed and StreamgateDeadLetters fire here, having no `for`).
Every streamgate_* name these use must also be one `streamgate --metrics-markdown` lists.

    test_prometheus_live.py SOURCE_ROOT   (binaries from SG_BINARY, SG_MOCK_KAFKA,
                                           SG_GEN_BINARY, SG_TSEMU_BINARY; SG_PROMETHEUS)
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'tools'))
from sgproc import (SLOW, fail, http, on_fail, procs, run, start_line, wait_for,  # noqa: E402
                    workdir)

ROOT = os.path.abspath(sys.argv[1])
INSTANCE, AKID, SECRET = 'promit', 'AKPROM', 'prom-secret'


def stop_all():
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in reversed(procs):
        try:
            p.wait(timeout=30 * SLOW)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


on_fail.append(stop_all)


servers = {}


def streamgate(name, args, env):
    log = os.path.join(workdir, name + '.log')
    p = subprocess.Popen([os.environ['SG_BINARY']] + args, env=env, stdout=subprocess.DEVNULL,
                         stderr=open(log, 'w'))
    procs.append(p)
    servers[name] = p

    def listening():
        if p.poll() is not None:
            fail('%s exited with %s at start' % (name, p.returncode))
        m = re.search(r'"msg":"listening","http":"([^"]+)"(?:,"tcp":"([^"]*)")?', open(log).read())
        return m.groups() if m else None
    return wait_for(listening, 20, name + ' listening')


def background(name, argv):
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(workdir, name + '.log'), 'w'))
    procs.append(p)
    return p


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


# --- what the rules and the dashboard ask Prometheus ---------------------------------------

COMPARISON = re.compile(r'(==|!=|>=|<=|>|<)(?!\s*bool\b)')


def with_bool(expr):
    """`a > 1 and b == 0` -> `a > bool 1 and b == bool 0`: comparisons outside label matchers
    return 0 or 1 instead of filtering."""
    out, depth, quote, i = [], 0, None, 0
    while i < len(expr):
        c = expr[i]
        if quote:
            out.append(c)
            if c == '\\':
                out.append(expr[i + 1])
                i += 1
            elif c == quote:
                quote = None
        elif c in '"\'`':
            quote = c
            out.append(c)
        elif c == '{':
            depth += 1
            out.append(c)
        elif c == '}':
            depth -= 1
            out.append(c)
        elif depth == 0 and COMPARISON.match(expr, i):
            op = COMPARISON.match(expr, i).group(1)
            out.append(op + ' bool')
            i += len(op)
            continue
        else:
            out.append(c)
        i += 1
    return ''.join(out)


def dashboard_exprs(dash):
    """(what, query) for every panel target, template variable and annotation; Grafana's
    variables become what selects every series."""
    def concrete(q):
        q = q.replace('$__rate_interval', '1m').replace('${__rate_interval}', '1m')
        q = re.sub(r'\$\{?(job|instance)\}?', '.+', q)
        if '$' in q:
            fail('dashboard query with an unknown variable: ' + q)
        return q
    out = []
    for p in dash['panels']:
        for t in p.get('targets', []):
            out.append(('panel "%s" %s' % (p['title'], t['refId']), concrete(t['expr'])))
    for v in dash['templating']['list']:
        if v['type'] == 'query':
            q = v['query']['query'] if isinstance(v['query'], dict) else v['query']
            m = re.fullmatch(r'label_values\((.*),\s*(\w+)\)', q)
            if not m:
                fail('variable %s: not a label_values() query: %s' % (v['name'], q))
            out.append(('variable ' + v['name'], 'group by (%s) (%s)' % (m.group(2),
                                                                       concrete(m.group(1)))))
    for a in dash['annotations']['list']:
        if 'expr' in a:
            out.append(('annotation ' + a['name'], concrete(a['expr'])))
    return out


def rule_exprs(rules):
    out = []
    for g in rules['groups']:
        for r in g['rules']:
            if 'record' in r:
                out.append(('record %s' % r['record'], r['expr']))
                out.append(('recorded series %s' % r['record'], r['record']))
            else:
                out.append(('alert %s' % r['alert'], with_bool(r['expr'])))
    return out


def check_names(exprs):
    """Every streamgate_* name must be a metric the binary exports (histograms by their
    _bucket/_sum/_count series)."""
    table = subprocess.run([os.environ['SG_BINARY'], '--metrics-markdown'], capture_output=True,
                           text=True, check=True).stdout
    known = set()
    for name, kind in re.findall(r'^\| `(streamgate_\w+)[^`]*` \| (\w+) \|', table, re.M):
        known.add(name)
        if kind == 'histogram':
            known.update(name + s for s in ('_bucket', '_sum', '_count'))
    if len(known) < 40:
        fail('--metrics-markdown listed only %d names' % len(known))
    for what, q in exprs:
        for name in re.findall(r'(?<![\w:])streamgate_\w+', q):
            if name not in known:
                fail('%s uses %s, which streamgate does not export' % (what, name))


def main():
    rules = yaml.safe_load(open(os.path.join(ROOT, 'deploy/prometheus/alerts.yml')))
    dash = json.load(open(os.path.join(ROOT, 'deploy/grafana/streamgate.json')))
    exprs = rule_exprs(rules) + dashboard_exprs(dash)
    check_names(exprs)
    # The rewriting itself: a comparison becomes a bool one, label matchers are left alone.
    assert with_bool('up{job=~"a.*",x!="y"} == 0 and b > 1') == \
        'up{job=~"a.*",x!="y"} == bool 0 and b > bool 1'

    env = dict(os.environ, STREAMGATE_TABLESTORE_ACCESS_KEY_SECRET=SECRET)
    mock, bootstrap = start_line([os.environ['SG_MOCK_KAFKA'], '--partitions', '4', '--topics',
                                  'events,aggregates'], r'^bootstrap=(\S+)', 'mock_kafka')
    # Busy answers: whole requests (5xx) and single rows; with one retry some rows fail for
    # good and go to the dead-letter output.
    emu, endpoint = start_line([os.environ['SG_TSEMU_BINARY'], '--listen', '127.0.0.1:0',
                                '--instance', INSTANCE, '--access-key-id', AKID,
                                '--access-key-secret', SECRET, '--busy', '0.1', '--busy-rows',
                                '0.3'], r'^listening (http://\S+)', 'tsemu')
    common = ['--kafka-brokers', bootstrap, '--stream-partitions', '4', '--log-level', 'info']
    agg_http, _ = streamgate('aggregator', [
        '--role', 'aggregator', '--http-listen', '127.0.0.1:0', '--tcp-listen', '',
        '--window-size', '1s', '--window-idle-timeout', '1s', '--tablestore-endpoint', endpoint,
        '--tablestore-instance', INSTANCE, '--tablestore-access-key-id', AKID,
        '--tablestore-create-tables', 'true', '--tablestore-max-retries', '1',
        '--tablestore-retry-backoff', '10ms', '--output-dead-letter-file',
        os.path.join(workdir, 'dead.ndjson')] + common, env)
    gw_http, _ = streamgate('gateway', ['--role', 'gateway', '--http-listen', '127.0.0.1:0',
                                        '--tcp-listen', '127.0.0.1:0'] + common, env)
    gen = background('gen', [os.environ['SG_GEN_BINARY'], '--http',
                             'http://%s/v1/events' % gw_http, '--rate', '400', '--keys', '50',
                             '--batch', '10', '--ts-step', '0', '--late', '0.02',
                             '--window-size', '1000', '--duration', str(150 * SLOW), '--quiet'])
    # Rejections, by reason.
    for body in (b'{"value":1}', b'not json', b'{"key":"k","ts":"yesterday","value":1}'):
        if http(gw_http, 'POST', '/v1/events', body)[0] != 400:
            fail('a bad event was not answered 400')

    # Prometheus, with the compose file's scrape jobs pointed at these processes.
    conf = yaml.safe_load(open(os.path.join(ROOT, 'deploy/compose/prometheus.yml')))
    targets = {'streamgate-gateway': gw_http, 'streamgate-aggregator': agg_http}
    jobs = [j['job_name'] for j in conf['scrape_configs']]
    if sorted(jobs) != sorted(targets):
        fail('deploy/compose/prometheus.yml scrapes %s' % jobs)
    for j in conf['scrape_configs']:
        j['static_configs'] = [{'targets': [targets[j['job_name']]]}]
    conf['global'] = {'scrape_interval': '1s', 'evaluation_interval': '1s'}
    conf['rule_files'] = [os.path.join(ROOT, 'deploy/prometheus/alerts.yml')]
    conf_path = os.path.join(workdir, 'prometheus.yml')
    yaml.safe_dump(conf, open(conf_path, 'w'))
    port = free_port()
    prom = '127.0.0.1:%d' % port
    background('prometheus', [os.environ.get('SG_PROMETHEUS') or 'prometheus',
                         '--config.file=' + conf_path,
                         '--storage.tsdb.path=' + os.path.join(workdir, 'tsdb'),
                         '--web.listen-address=127.0.0.1:%d' % port, '--log.level=warn'])
    wait_for(lambda: http(prom, 'GET', '/-/ready')[0] == 200, 30, 'Prometheus ready')

    def query(q):
        status, body = http(prom, 'GET', '/api/v1/query?' +
                            urllib.parse.urlencode({'query': q}))
        if status == 400:
            fail('Prometheus refuses %r: %s' % (q, body))
        if status != 200:
            return None
        return json.loads(body)['data']['result']

    def scraped():
        r = query('up{job=~"streamgate-.*"} == 1')
        return r is not None and len(r) == 2
    wait_for(scraped, 30, 'both streamgate processes scraped')

    missing = [e for e in exprs]
    t0 = time.monotonic()

    def all_answered():
        still = []
        for what, q in missing:
            if not query(q):
                still.append((what, q))
        missing[:] = still
        return not missing
    deadline = 90 * SLOW
    while not all_answered():
        if time.monotonic() - t0 > deadline:
            fail('no data after %d s for:\n  %s' % (deadline, '\n  '.join(
                '%s: %s' % (w, q) for w, q in missing)))
        time.sleep(1)
    print('%d expressions returned data after %.0f s' % (len(exprs), time.monotonic() - t0))

    # The two alerts without `for` fire on what the emulator refused.
    def firing():
        alerts = {a['metric']['alertname'] for a in query('ALERTS{alertstate="firing"}') or []}
        return {'StreamgateRecordsFailed', 'StreamgateDeadLetters'} <= alerts
    wait_for(firing, 30, 'StreamgateRecordsFailed and StreamgateDeadLetters firing')

    # The streamgate processes stop cleanly (under the sanitizers: with no report).
    gen.send_signal(signal.SIGTERM)
    gen.wait(timeout=30 * SLOW)
    for name in ('gateway', 'aggregator'):
        p = servers[name]
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(timeout=60 * SLOW)
        except subprocess.TimeoutExpired:
            fail(name + ' did not stop within a minute of SIGTERM')
        log = open(os.path.join(workdir, name + '.log'), errors='replace').read()
        if rc != 0 or re.search(r'ERROR: \w+Sanitizer|runtime error:', log):
            fail('%s exited %d after SIGTERM' % (name, rc))
    stop_all()
    print('1 passed, 0 failed')


if __name__ == '__main__':
    run(main)
