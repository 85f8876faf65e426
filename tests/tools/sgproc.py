"""What the Python tests that start streamgate and its companions share: a work directory whose
*.log files a failure prints, bounded waits (stretched under the sanitizers), HTTP requests, and
processes that announce themselves on their first line of stdout (the mock Kafka cluster, the
Tablestore emulator). Import it after putting tests/tools on sys.path."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

SLOW = 3 if os.environ.get('SG_SANITIZED') else 1

procs = []
workdir = tempfile.mkdtemp(prefix='sg-test-')
on_fail = []  # callables run before a failure exits, e.g. to stop what a test started


def fail(msg):
    print('FAIL:', msg, '(files in %s)' % workdir, flush=True)
    for name in sorted(os.listdir(workdir)):
        if name.endswith('.log'):
            text = open(os.path.join(workdir, name), errors='replace').read()
            print('--- %s (last lines) ---' % name)
            print('\n'.join(text.splitlines()[-15:]))
    for f in on_fail:
        f()
    sys.exit(1)


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    fail('timed out waiting for ' + what)


def http(addr, method, path, body=None):
    """(status, body) of one request to host:port; status 0 when nothing answered."""
    req = urllib.request.Request('http://%s%s' % (addr, path), data=body, method=method)
    if body is not None:
        req.add_header('Content-Type', 'application/json')
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError, OSError):
        return 0, ''


def start_line(argv, pattern, name):
    """Starts argv (stderr to NAME.log) and returns it with the first group of `pattern` in its
    first line of stdout."""
    log = open(os.path.join(workdir, name + '.log'), 'w')
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                         text=True)
    procs.append(p)
    line = p.stdout.readline()
    m = re.search(pattern, line)
    if not m:
        fail('%s did not start: %r' % (name, line))
    return p, m.group(1)


def run(main):
    """Runs a test's main(): whatever it started and left running is killed at the end, and the
    work directory is removed when it passed (kept for a look when it failed)."""
    try:
        main()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    shutil.rmtree(workdir, ignore_errors=True)
