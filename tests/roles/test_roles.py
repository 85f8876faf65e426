#!/usr/bin/env python3
"""Kafka as the spine, end to end: an external mock Kafka cluster (tests/tools/mock_kafka), two
`gateway` processes fed by streamgate-gen (--expect), and `aggregator` processes in one consumer
group writing window results to the Tablestore emulator. During the run aggregators are killed
with SIGKILL at three different times and replaced later, and a fourth member joins midway, so
partitions move between members while windows are open and results are in flight. At the end
every (key, window) row read back from the emulator with the official SDK must equal the
generators' expectation exactly: none partial, none missing, none extra.

Also checked on the way: an aggregator answers POST /v1/events with a 404 naming its role and
/readyz with 200 once it has its assignment; a gateway keeps no windows; members that take
partitions over read their keys' forecast models back from the table.

    test_roles.py   (paths from SG_BINARY, SG_MOCK_KAFKA, SG_GEN_BINARY, SG_TSEMU_BINARY,
                     SG_NODE, SG_SDK_DIR; SG_SANITIZED stretches every wait)
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'tools'))
from sgproc import SLOW, fail, http, procs, run, start_line, wait_for, workdir  # noqa: E402

INSTANCE, AKID, SECRET = 'rolesit', 'AKROLES', 'roles-secret'
BASE_TS = 1700000000000
WINDOW_MS = 1000
LATENESS_MS = 5000
RATE = 600         # events/s per generator; event time runs at the wall clock's pace (1 ms/event)
DURATION = 36      # seconds the generators run
KEYS = 60          # keys per generator


def metrics(addr):
    status, text = http(addr, 'GET', '/metrics')
    out = {}
    if status != 200:
        return None
    for line in text.splitlines():
        if line and not line.startswith('#'):
            name, _, value = line.rpartition(' ')
            out[name] = float(value)
    return out


class Server:
    """One streamgate process; its log is NAME.log in the work directory."""

    def __init__(self, name, args, env):
        self.name = name
        self.log = os.path.join(workdir, name + '.log')
        self.proc = subprocess.Popen([os.environ['SG_BINARY']] + args, env=env,
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, 'w'))
        procs.append(self.proc)
        self.http = wait_for(self._listening, 20, name + ' listening')

    def _listening(self):
        if self.proc.poll() is not None:
            fail('%s exited with %s at start' % (self.name, self.proc.returncode))
        m = re.search(r'"msg":"listening","http":"([^"]+)"', open(self.log).read())
        return m.group(1) if m else None

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=60 * SLOW)
        except subprocess.TimeoutExpired:
            fail(self.name + ' did not stop within a minute of SIGTERM')
        if rc != 0:
            fail('%s exited %d after SIGTERM' % (self.name, rc))


def main():
    env = dict(os.environ, STREAMGATE_TABLESTORE_ACCESS_KEY_SECRET=SECRET)
    mock, bootstrap = start_line([os.environ['SG_MOCK_KAFKA'], '--partitions', '12', '--topics',
                                  'events,aggregates'], r'^bootstrap=(\S+)', 'mock_kafka')
    emu, endpoint = start_line([os.environ['SG_TSEMU_BINARY'], '--listen', '127.0.0.1:0',
                                '--instance', INSTANCE, '--access-key-id', AKID,
                                '--access-key-secret', SECRET],
                               r'^listening (http://\S+)', 'tsemu')
    common = ['--http-listen', '127.0.0.1:0', '--tcp-listen', '', '--kafka-brokers', bootstrap,
              '--log-level', 'info']
    windows = ['--window-size', '%dms' % WINDOW_MS, '--window-allowed-lateness',
               '%dms' % LATENESS_MS, '--window-idle-timeout', '2s', '--tablestore-endpoint',
               endpoint, '--tablestore-instance', INSTANCE, '--tablestore-access-key-id', AKID,
               '--tablestore-create-tables', 'true', '--shutdown-timeout', '30s']
    serial = [0]

    def aggregator():
        serial[0] += 1
        return Server('aggregator-%d' % serial[0], ['--role', 'aggregator'] + common + windows,
                      env)

    def ready(s):
        return http(s.http, 'GET', '/readyz')[0] == 200

    aggs = [aggregator()]
    wait_for(lambda: ready(aggs[0]), 30, 'the first aggregator ready (tables made, assigned)')
    aggs += [aggregator(), aggregator()]
    for a in aggs:
        wait_for(lambda a=a: ready(a), 30, a.name + ' ready')

    # An aggregator takes no events, and says so.
    status, body = http(aggs[0].http, 'POST', '/v1/events', b'{"key":"a","v":1}')
    if status != 404 or 'aggregator' not in body:
        fail('POST /v1/events on an aggregator: %d %s' % (status, body))
    info = json.loads(http(aggs[0].http, 'GET', '/v1/info')[1])
    if info.get('role') != 'aggregator' or info['listeners']['tcp'] != '':
        fail('aggregator /v1/info: %s' % info)

    gateways = [Server('gateway-%d' % i, ['--role', 'gateway'] + common, env) for i in (1, 2)]
    if http(gateways[0].http, 'GET', '/v1/streams')[0] != 404:
        fail('a gateway keeps no windows: /v1/streams should be 404')

    gens = []
    for i, (gw, source) in enumerate(zip(gateways, ('sensors', 'logs'))):
        expect = os.path.join(workdir, 'expect-%d.ndjson' % i)
        argv = [os.environ['SG_GEN_BINARY'], '--http', 'http://%s/v1/events' % gw.http,
                '--source', source, '--keys', str(KEYS), '--rate', str(RATE), '--duration',
                str(DURATION), '--batch', '10', '--connections', '2', '--start-ts', str(BASE_TS),
                '--ts-step', '1', '--window-size', str(WINDOW_MS), '--lateness', str(LATENESS_MS),
                '--seed', str(i + 1), '--expect', expect, '--json', '--quiet']
        out = open(os.path.join(workdir, 'gen-%d.json' % i), 'w')
        gens.append((subprocess.Popen(argv, stdout=out, stderr=open(
            os.path.join(workdir, 'gen-%d.log' % i), 'w')), expect, out.name))
        procs.append(gens[-1][0])
    t0 = time.monotonic()

    def at(seconds):
        wait_for(lambda: time.monotonic() - t0 >= seconds, seconds + 30, 'the run\'s clock')

    # Three kills at different times, replacements later, and a fourth member midway.
    at(6)
    aggs[0].kill()                       # kill 1
    at(11)
    aggs.append(aggregator())            # a fourth member joins: a rebalance
    # Not ready until the group gave it its partitions.
    joined = json.loads(http(aggs[-1].http, 'GET', '/v1/info')[1])['kafka_consumer']
    if joined['ready'] or joined['partitions'] or http(aggs[-1].http, 'GET', '/readyz')[0] != 503:
        fail('a member that just joined is ready before its assignment: %s' % joined)
    wait_for(lambda: ready(aggs[-1]), 30, 'the fourth member ready')
    at(15)
    aggs.append(aggregator())            # the replacement of the first
    at(20)
    aggs[1].kill()                       # kill 2
    at(25)
    aggs.append(aggregator())            # its replacement
    at(30)
    aggs[3].kill()                       # kill 3: the member that joined midway
    at(34)
    aggs.append(aggregator())
    live = [a for a in aggs if a.proc.poll() is None]

    for g, _, out in gens:
        if g.wait(timeout=(DURATION + 60) * SLOW) != 0:
            fail('streamgate-gen exited %d' % g.returncode)
        stats = json.load(open(out))
        if stats['errors'] or stats['lost'] or stats['acked'] != stats['sent']:
            fail('generator: %s' % stats)

    # Done when the group has every partition, nothing is left to read, no window is open and
    # no row is waiting, twice in a row.
    def settled():
        parts, lag, open_windows, pending = set(), 0, 0, 0
        for a in live:
            m = metrics(a.http)
            info = json.loads(http(a.http, 'GET', '/v1/info')[1] or '{}')
            if m is None or not info.get('kafka_consumer'):
                return False
            parts.update(info['kafka_consumer']['partitions'])
            lag += sum(v for k, v in m.items() if k.startswith('streamgate_kafka_consumer_lag'))
            open_windows += m['streamgate_windows_open']
            pending += m['streamgate_tablestore_rows_pending'] + \
                m['streamgate_tablestore_requests_in_flight']
        return len(parts) == 12 and lag == 0 and open_windows == 0 and pending == 0

    wait_for(lambda: settled() and (time.sleep(1.5) or settled()), 90,
             'every record read, every window fired and written')
    replayed = rebalances = commits = restored = 0
    for a in live:
        m = metrics(a.http)
        replayed += m['streamgate_kafka_records_skipped_total{reason="replayed"}']
        rebalances += m['streamgate_kafka_rebalances_total']
        commits += m['streamgate_kafka_commits_total{result="ok"}']
        restored += m.get('streamgate_predict_restores_total{outcome="restored"}', 0)
    for s in live + gateways:
        s.stop()

    # The results table, read back by the official SDK, as --check-results reads results.
    rows = subprocess.run(
        [os.environ['SG_NODE'], os.path.join(os.environ['SG_SDK_DIR'], 'readback.js'),
         'streamgate_results', 'key,window_start'], capture_output=True, text=True,
        env=dict(os.environ, SG_TSEMU_ENDPOINT=endpoint, SG_TSEMU_INSTANCE=INSTANCE,
                 SG_TSEMU_AK_ID=AKID, SG_TSEMU_AK_SECRET=SECRET))
    if rows.returncode != 0:
        fail('readback.js: ' + rows.stderr)
    expect = os.path.join(workdir, 'expect.ndjson')
    fields = set()
    with open(expect, 'w') as out:
        for _, path, _ in gens:  # sensor-* sorts before svc-*
            for line in open(path):
                fields.update(json.loads(line)['fields'])
                out.write(line)
    results = os.path.join(workdir, 'results.ndjson')
    nrows = 0
    with open(results, 'w') as out:
        for line in rows.stdout.splitlines():
            row = {k: int(v['int']) if isinstance(v, dict) and 'int' in v else v
                   for k, v in json.loads(line).items()}
            res = {'key': row['key'], 'window_start': row['window_start'],
                   'window_end': row['window_end'], 'count': row['count'], 'fields': {},
                   'final': row.get('final', False)}
            for f in fields:
                stats = {s: row[f + '_' + s] for s in ('count', 'sum', 'min', 'max')
                         if f + '_' + s in row}
                if stats:
                    res['fields'][f] = stats
            out.write(json.dumps(res) + '\n')
            nrows += 1
    check = subprocess.run([os.environ['SG_GEN_BINARY'], '--check-results', results, '--expect',
                            expect], capture_output=True, text=True)
    if check.returncode != 0:
        fail('rows differ from the expectation:\n' + check.stderr[-3000:])
    if rebalances < 2 or commits == 0:
        fail('expected rebalances and commits, saw %d and %d' % (rebalances, commits))
    # Members that took partitions over read their keys' forecast models back from the table.
    if restored == 0:
        fail('no member that took partitions over restored a key\'s forecast models')
    print('ok: %d rows equal the expectation; %d records skipped as replayed, %d rebalances '
          'counted by the last members' % (nrows, replayed, rebalances))
    mock.stdin.close()
    emu.send_signal(signal.SIGTERM)


if __name__ == '__main__':
    run(main)
