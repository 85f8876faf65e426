#!/usr/bin/env python3
"""scripts/run, as a user meets it: it builds (without the test suite), starts the emulator and
the gateway, and says where they are and what to try next. The test runs those three commands
as printed, then presses Ctrl-C the way a terminal does (SIGINT to the whole foreground process
group) and checks that the gateway drained before the emulator stopped: exit 0, a clean stop
logged, and no record left unwritten or undelivered.

    test_run.py SOURCE_ROOT BUILD_DIR
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time


def fail(msg, err_path=None):
    print('FAIL:', msg)
    if err_path:
        print('--- scripts/run stderr ---')
        print(open(err_path, encoding='utf-8', errors='replace').read()[-6000:])
    sys.exit(1)


def wait_for(cond, timeout, what, err_path=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    fail('timed out waiting for ' + what, err_path)


def main(root, build):
    build = os.path.abspath(build)
    work = tempfile.mkdtemp(prefix='sg-run-test-')
    out_path, err_path = os.path.join(work, 'out'), os.path.join(work, 'err')
    env = dict(os.environ, SG_BUILD_DIR=build)
    # The child starts with Ctrl-C's default action, as from a terminal, in a group of its own
    # that stands for the terminal's foreground group.
    with open(out_path, 'w') as out, open(err_path, 'w') as err:
        proc = subprocess.Popen(
            ['./scripts/run', '--http-listen', '127.0.0.1:0', '--tcp-listen', '127.0.0.1:0'],
            cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        def banner():
            if proc.poll() is not None:
                fail('scripts/run exited with %d before it was ready' % proc.returncode, err_path)
            text = open(err_path, encoding='utf-8', errors='replace').read()
            return text if 'Try, from another terminal:' in text else None
        text = wait_for(banner, 900, 'the banner of scripts/run', err_path)

        http = re.search(r'HTTP ingest +http://(\S+)/v1/events', text).group(1)
        tcp = re.search(r'TCP ingest +(\S+:\d+)', text).group(1)
        for where in ('Kafka', 'Tablestore', 'programs'):
            if not re.search(r'^  %s +\S' % where, text, re.M):
                fail('the banner does not say where %s is' % where, err_path)
        tries = text.split('Try, from another terminal:\n', 1)[1].splitlines()
        tries = [t.strip() for t in tries if t.startswith('  ')]
        if len(tries) != 3:
            fail('expected three commands to try, got %r' % tries, err_path)

        # The three commands, exactly as printed.
        results = [subprocess.run(t, shell=True, cwd=root, capture_output=True, text=True,
                                  timeout=120) for t in tries]
        for t, r in zip(tries, results):
            if r.returncode != 0:
                fail('%r exited %d: %s%s' % (t, r.returncode, r.stdout, r.stderr), err_path)
        if json.loads(results[0].stdout).get('accepted') != 1:
            fail('the first command was not accepted: ' + results[0].stdout, err_path)
        if '100000 acknowledged' not in results[1].stderr + results[1].stdout:
            fail('the generator did not have every event acknowledged: ' + results[1].stderr,
                 err_path)
        if not re.search(r'^streamgate_events_accepted_total\{transport="http"\} 100001$',
                         results[2].stdout, re.M):
            fail('the metrics do not count the 100001 events: ' + results[2].stdout, err_path)

        # One line over TCP too, in a window still open when Ctrl-C comes: its result is written
        # to the emulator during the drain, which needs the emulator alive until the end.
        host, port = tcp.rsplit(':', 1)
        with socket.create_connection((host, int(port))) as s:
            s.sendall(b'{"key":"run-test","value":1}\n')

        def counted():
            r = subprocess.run(['curl', '-s', 'http://%s/metrics' % http], capture_output=True,
                               text=True)
            return re.search(r'^streamgate_events_accepted_total\{transport="tcp"\} 1$',
                             r.stdout, re.M)
        wait_for(counted, 30, 'the TCP event to be counted', err_path)

        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        try:
            status = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            fail('scripts/run did not stop within 60 s of Ctrl-C', err_path)
        took = time.monotonic() - started
        log = open(err_path, encoding='utf-8', errors='replace').read()
        if status != 0:
            fail('scripts/run exited %d after Ctrl-C' % status, err_path)
        for bad in ('left unwritten', 'left undelivered', '"level":"error"'):
            if bad in log:
                fail('the stop was not clean: %r in the log' % bad, err_path)
        if '"msg":"stopped"' not in log:
            fail('the gateway did not log a clean stop', err_path)
        print('scripts/run: banner, three commands, Ctrl-C drained and exited 0 in %.2f s' % took)
        print('1 passed, 0 failed')
        return 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # Nothing scripts/run started may outlive it.
        left = subprocess.run(['pgrep', '-f', os.path.abspath(build) + '/'],
                              capture_output=True, text=True).stdout.split()
        left = [p for p in left if int(p) != os.getpid()]
        if left:
            for p in left:
                try:
                    os.kill(int(p), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            fail('processes outlived scripts/run: %s' % ' '.join(left))


if __name__ == '__main__':
    sys.exit(main(sys.argv[1], sys.argv[2]))
