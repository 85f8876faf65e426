#!/usr/bin/env python3
"""Checks deploy/ without a container runtime or a cluster: what can be checked here is checked
with the real tools and the real binaries.

  - every YAML and JSON file under deploy/ parses;
  - the container: the Dockerfile's build stage runs exactly README.md's "Installing" commands;
    its runtime stage installs the Debian package of every shared library the three programs
    name (DT_NEEDED, resolved with ldd and dpkg -S); a non-root user, SIGTERM, and a
    HEALTHCHECK command that passes against a running streamgate and fails once it stopped;
  - compose: the gateway's and the aggregator's environment over the image's configuration
    passes `streamgate --check-config`; Prometheus scrapes the ports they listen on; the
    files it mounts exist; its stop grace period exceeds shutdown.timeout;
  - Kubernetes: each Deployment's configuration (its ConfigMap item, its environment, its
    flags) passes --check-config; probes on /readyz and /healthz on the listening port;
    terminationGracePeriodSeconds over shutdown.timeout; Services, PodDisruptionBudgets and
    the ServiceMonitor select the pods and ports that exist; the HPA scales the gateways on CPU
    and they request CPU; aggregators at most stream.partitions; the AccessKey Secret is mounted
    where tablestore.access_key_secret_file reads it; the PrometheusRule holds alerts.yml;
  - systemd: `systemd-analyze verify` prints nothing and exits 0 on every unit (ExecStart
    pointed at the built binary); each unit's configuration passes --check-config, listens
    where it says, writes its files into StateDirectory/LogsDirectory and reads the AccessKey
    through LoadCredential; TimeoutStopSec exceeds shutdown.timeout.
The schemas (Kubernetes objects, the compose specification) are checked by check_schemas.js.

    test_deploy.py SOURCE_ROOT [--write-prometheusrule]
      (SG_BINARY, SG_GEN_BINARY, SG_TSEMU_BINARY: the built programs)
"""
import glob
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.abspath(sys.argv[1])
D = os.path.join(ROOT, 'deploy')
failures = []
checks = [0]


def check(cond, msg):
    checks[0] += 1
    if not cond:
        failures.append(msg)
        print('FAIL:', msg, flush=True)
    return cond


def read(path):
    return open(os.path.join(ROOT, path)).read()


def duration_s(text):
    m = re.fullmatch(r'(\d+)(ms|s|m|h)?', str(text))
    n, unit = int(m.group(1)), m.group(2) or 'ms'
    return n * {'ms': 0.001, 's': 1, 'm': 60, 'h': 3600}[unit]


def check_config(what, config_text, env=None, args=()):
    """streamgate --check-config over a configuration file, environment and flags; returns the
    configuration as the file says it (a dict)."""
    tmp = tempfile.mkdtemp(prefix='sg-deploy-')
    try:
        path = os.path.join(tmp, 'config.json')
        open(path, 'w').write(config_text)
        clean = {k: v for k, v in os.environ.items() if not k.startswith('STREAMGATE_')}
        r = subprocess.run([os.environ['SG_BINARY'], '--config', path, *args, '--check-config'],
                           env=dict(clean, **(env or {})), capture_output=True, text=True)
        check(r.returncode == 0 and r.stdout == 'configuration ok\n',
              '%s: --check-config says %r %r' % (what, r.stdout, r.stderr))
        check('warn' not in r.stderr, '%s: --check-config warns: %s' % (what, r.stderr))
    finally:
        shutil.rmtree(tmp)
    return json.loads(config_text)


def get(conf, dotted, env=None, default=None):
    """An option's value as the process sees it: environment over the file."""
    envname = 'STREAMGATE_' + dotted.replace('.', '_').upper()
    if env and envname in env:
        return env[envname]
    for part in dotted.split('.'):
        if not isinstance(conf, dict) or part not in conf:
            return default
        conf = conf[part]
    return conf


def port_of(listen):
    return int(listen.rsplit(':', 1)[1])


# --- every file parses ----------------------------------------------------------------------

def parse_all():
    for path in sorted(glob.glob(D + '/**/*', recursive=True)):
        rel = os.path.relpath(path, ROOT)
        try:
            if path.endswith(('.yml', '.yaml')):
                docs = list(yaml.safe_load_all(open(path)))
                check(docs and all(d is not None for d in docs), rel + ': an empty document')
            elif path.endswith('.json'):
                json.load(open(path))
        except (yaml.YAMLError, ValueError) as e:
            check(False, '%s does not parse: %s' % (rel, e))


# --- the container --------------------------------------------------------------------------

def dockerfile_stages():
    text = re.sub(r'\\\n', ' ', read('deploy/container/Dockerfile'))
    stages, cur = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        word, _, rest = line.partition(' ')
        if word == 'FROM':
            cur = {'from': rest, 'lines': []}
            stages.append(cur)
        else:
            cur['lines'].append((word, ' '.join(rest.split())))
    return stages


def readme_install_steps():
    readme = read('README.md')
    m = re.search(r'^### Installing\n\n```sh\n(.*?)```', readme, re.S | re.M)
    check(m, 'README.md has no "### Installing" sh block')
    steps = []
    for line in m.group(1).splitlines():
        line = line.split('#', 1)[0].strip()
        if line:
            steps.append(' '.join(line.split()))
    return steps


def needed_packages(binary):
    """The Debian packages holding the shared libraries a program names in DT_NEEDED."""
    dyn = subprocess.run(['readelf', '-d', binary], capture_output=True, text=True,
                         check=True).stdout
    needed = re.findall(r'\(NEEDED\)\s+Shared library: \[([^\]]+)\]', dyn)
    paths = dict(re.findall(r'^\s*(\S+) => (\S+)', subprocess.run(
        ['ldd', binary], capture_output=True, text=True, check=True).stdout, re.M))
    pkgs = set()
    for so in needed:
        if re.match(r'lib(asan|ubsan)\.', so):  # the sanitizer build's runtime, not the product's
            continue
        check(so in paths, '%s: ldd does not resolve %s' % (binary, so))
        real = os.path.realpath(paths.get(so, so))
        owner = None
        for candidate in (real, re.sub(r'^/usr', '', real), paths.get(so, so)):
            r = subprocess.run(['dpkg', '-S', candidate], capture_output=True, text=True)
            if r.returncode == 0:
                owner = r.stdout.split(':')[0]
                break
        check(owner, '%s: no Debian package holds %s (%s)' % (binary, so, real))
        if owner:
            pkgs.add(owner)
    return pkgs


def check_healthcheck(healthcheck):
    """The HEALTHCHECK command, run by /bin/sh as the runtime would: 0 against a running
    streamgate on the port STREAMGATE_HTTP_LISTEN names, non-zero once it has stopped."""
    m = re.search(r'\bCMD\s+(.*)', healthcheck)
    if not check(m, 'HEALTHCHECK has no CMD'):
        return
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        addr = '127.0.0.1:%d' % s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith('STREAMGATE_')}
    env.update(STREAMGATE_HTTP_LISTEN=addr, STREAMGATE_TCP_LISTEN='')
    p = subprocess.Popen([os.environ['SG_BINARY']], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    try:
        for line in p.stderr:  # the listening line comes once the listener is up
            if '"msg":"listening"' in line:
                break
        r = subprocess.run(['/bin/sh', '-c', m.group(1)], env=env, capture_output=True)
        check(r.returncode == 0, 'HEALTHCHECK fails against a running streamgate: %r' % r)
    finally:
        p.terminate()
        check(p.wait(timeout=60) == 0, 'streamgate did not stop cleanly')
    r = subprocess.run(['/bin/sh', '-c', m.group(1)], env=env, capture_output=True)
    check(r.returncode != 0, 'HEALTHCHECK passes with nothing listening')


def check_container():
    stages = dockerfile_stages()
    check(len(stages) == 2, 'the Dockerfile has %d stages, expected build and runtime' % len(stages))
    build, run = stages[0], stages[-1]
    check(re.fullmatch(r'debian:bookworm AS build', build['from']), 'build stage: ' + build['from'])
    check(run['from'].startswith('debian:bookworm'), 'runtime stage: ' + run['from'])
    build_runs = [arg for word, arg in build['lines'] if word == 'RUN']
    steps = readme_install_steps()
    check(build_runs == steps,
          "the Dockerfile's build steps differ from README.md's Installing:\n  %s\nvs\n  %s"
          % ('\n  '.join(build_runs), '\n  '.join(steps)))
    # The runtime packages cover every library the programs link against.
    runs = ' '.join(arg for word, arg in run['lines'] if word == 'RUN')
    m = re.search(r'apt-get install -y --no-install-recommends ([a-z0-9.+\- ]+?) &&', runs)
    check(m, 'the runtime stage installs no packages')
    have = set(m.group(1).split()) if m else set()
    for var in ('SG_BINARY', 'SG_GEN_BINARY', 'SG_TSEMU_BINARY'):
        want = needed_packages(os.environ[var]) - {'libc6'}
        check(want, '%s names no library' % var)
        check(want <= have, 'the runtime stage lacks %s, which %s needs'
              % (sorted(want - have), os.path.basename(os.environ[var])))
    lines = dict((w, a) for w, a in run['lines'] if w in ('USER', 'STOPSIGNAL', 'HEALTHCHECK',
                                                          'ENTRYPOINT'))
    user = lines.get('USER', 'root').split(':')[0]
    check(user not in ('root', '0'), 'the image runs as ' + user)
    check(lines.get('STOPSIGNAL') == 'SIGTERM', 'STOPSIGNAL is %s' % lines.get('STOPSIGNAL'))
    check('/healthz' in lines.get('HEALTHCHECK', ''), 'no HEALTHCHECK on /healthz')
    copied = ' '.join(a for w, a in run['lines'] if w == 'COPY')
    for prog in ('streamgate', 'streamgate-gen', 'streamgate-tablestore-emu'):
        check('/usr/local/bin/%s ' % prog in copied, 'the image lacks ' + prog)
    entry = json.loads(lines.get('ENTRYPOINT', '[]'))
    check(entry[:3] == ['/usr/local/bin/streamgate', '--config', '/etc/streamgate/streamgate.json'],
          'ENTRYPOINT %s' % entry)
    check('COPY deploy/container/streamgate.json /etc/streamgate/streamgate.json' in
          ['COPY ' + a for w, a in run['lines'] if w == 'COPY'], 'the default configuration is not copied')
    check_healthcheck(lines.get('HEALTHCHECK', ''))
    env = {}
    for w, a in run['lines']:
        if w == 'ENV':
            env.update(dict(kv.split('=', 1) for kv in shlex.split(a)))
    conf = check_config('the image', read('deploy/container/streamgate.json'), env)
    return conf, env


# --- compose --------------------------------------------------------------------------------

def check_compose(image_conf, image_env):
    compose = yaml.safe_load(open(os.path.join(D, 'compose/compose.yaml')))
    services = compose['services']
    for name in ('kafka', 'gateway', 'aggregator', 'tablestore', 'prometheus', 'grafana',
                 'generator'):
        check(name in services, 'compose has no %s service' % name)
    check(services['kafka']['image'].startswith('apache/kafka:'), 'Kafka is not apache/kafka')
    check(services['kafka']['environment'].get('KAFKA_PROCESS_ROLES') == 'broker,controller',
          'Kafka is not one KRaft node')
    base = os.path.join(D, 'compose')
    for sname, s in services.items():
        for v in s.get('volumes', []):
            src = v.split(':')[0]
            if src.startswith('.'):
                check(os.path.exists(os.path.join(base, src)),
                      'compose %s mounts %s, which does not exist' % (sname, src))
        b = s.get('build')
        if b:
            check(os.path.exists(os.path.join(base, b['context'], b['dockerfile'])),
                  'compose %s builds from a missing Dockerfile' % sname)
    secrets = {n: os.path.join(base, s['file']) for n, s in compose.get('secrets', {}).items()}
    listen = {}
    for sname in ('gateway', 'aggregator'):
        s = services[sname]
        env = dict(image_env, **{k: str(v) for k, v in s['environment'].items()})
        tmp = tempfile.mkdtemp(prefix='sg-compose-')
        # Secrets appear under /run/secrets/NAME: point at the file compose mounts there.
        for n in s.get('secrets', []):
            for k, v in env.items():
                if v == '/run/secrets/' + n:
                    env[k] = secrets[n]
        check_config('compose ' + sname, json.dumps(image_conf), env)
        shutil.rmtree(tmp)
        listen[sname] = get(image_conf, 'http.listen', env)
        grace = duration_s(s.get('stop_grace_period', '10s'))
        check(grace > duration_s(get(image_conf, 'shutdown.timeout', env, '10s')),
              'compose %s: stop_grace_period %s is not over shutdown.timeout' % (sname, grace))
    for s in ('gateway', 'aggregator'):
        for n in services[s].get('secrets', []):
            check(n in secrets and os.path.exists(secrets[n]), 'compose secret %s missing' % n)
    # The topics are made with as many partitions as the aggregator's stream.partitions.
    made = re.findall(r'--partitions (\d+)', ' '.join(services['kafka-init']['command']))
    agg_env = {k: str(v) for k, v in services['aggregator']['environment'].items()}
    check(made and all(int(n) == int(get(image_conf, 'stream.partitions', agg_env, 12))
                       for n in made), 'compose: the topics\' partitions are not stream.partitions')
    gen = services['generator']['command']
    check(gen[gen.index('--http') + 1] == 'http://gateway:%d/v1/events' % port_of(listen['gateway']),
          'the generator does not send to the gateway')
    tokens = services['gateway']['environment'].get('STREAMGATE_HTTP_AUTH_TOKENS', '')
    if tokens:
        check(gen[gen.index('--token') + 1] in tokens.split(','), 'the generator has no token')
    prom = yaml.safe_load(open(os.path.join(D, 'compose/prometheus.yml')))
    targets = {j['job_name']: j['static_configs'][0]['targets'] for j in prom['scrape_configs']}
    check(targets == {'streamgate-gateway': ['gateway:%d' % port_of(listen['gateway'])],
                      'streamgate-aggregator': ['aggregator:%d' % port_of(listen['aggregator'])]},
          'Prometheus scrapes %s' % targets)
    mounted = {v.split(':')[1]: os.path.normpath(os.path.join(base, v.split(':')[0]))
               for v in services['prometheus']['volumes'] if v.startswith('.')}
    check(prom['rule_files'] == ['/etc/prometheus/alerts.yml'] and
          mounted.get('/etc/prometheus/alerts.yml') == os.path.join(D, 'prometheus', 'alerts.yml'),
          'Prometheus does not load deploy/prometheus/alerts.yml')


# --- Kubernetes -----------------------------------------------------------------------------

def check_kubernetes():
    kdir = os.path.join(D, 'kubernetes')
    kust = yaml.safe_load(open(os.path.join(kdir, 'kustomization.yaml')))
    objs = []
    for res in kust['resources']:
        check(os.path.exists(os.path.join(kdir, res)), 'kustomization names missing ' + res)
        objs += [o for o in yaml.safe_load_all(open(os.path.join(kdir, res))) if o]
    on_disk = {os.path.basename(p) for p in glob.glob(kdir + '/*.yaml')} - {'kustomization.yaml'}
    check(on_disk == set(kust['resources']), 'kustomization lists %s, the folder has %s'
          % (sorted(kust['resources']), sorted(on_disk)))
    by = {}
    for o in objs:
        by.setdefault(o['kind'], {})[o['metadata']['name']] = o
    cm = by['ConfigMap']['streamgate-config']['data']
    secret = by['Secret']['streamgate-secrets']
    secret_keys = set(secret.get('stringData', {})) | set(secret.get('data', {}))
    deps = by['Deployment']
    check(set(deps) == {'streamgate-gateway', 'streamgate-aggregator'}, 'Deployments: %s' % sorted(deps))
    for name, dep in deps.items():
        pod = dep['spec']['template']
        check(dep['spec']['selector']['matchLabels'].items() <= pod['metadata']['labels'].items(),
              name + ': the selector does not match the pod labels')
        spec = pod['spec']
        (c,) = spec['containers']
        args = c.get('args', [])
        cfile = args[args.index('--config') + 1]
        mounts = {m['mountPath']: m for m in c.get('volumeMounts', [])}
        vols = {v['name']: v for v in spec.get('volumes', [])}
        cdir, cname = os.path.split(cfile)
        vol = vols[mounts[cdir]['name']]
        item = [i for i in vol['configMap']['items'] if i['path'] == cname][0]
        conf_text = cm[item['key']]
        env, tmp = {}, tempfile.mkdtemp(prefix='sg-k8s-')
        for e in c.get('env', []):
            if 'value' in e:
                env[e['name']] = e['value']
            else:
                ref = e['valueFrom']['secretKeyRef']
                check(ref['name'] == 'streamgate-secrets' and ref['key'] in secret_keys,
                      '%s: env %s from a missing secret key' % (name, e['name']))
                env[e['name']] = secret['stringData'][ref['key']]
        rest = [a for i, a in enumerate(args) if i not in (args.index('--config'),
                                                           args.index('--config') + 1)]
        conf = check_config('kubernetes ' + name, conf_text, env, rest)
        shutil.rmtree(tmp)
        listen = get(conf, 'http.listen', env)
        ports = {p['name']: p['containerPort'] for p in c['ports']}
        check(ports.get('http') == port_of(listen), '%s: port http is not %s' % (name, listen))
        tcp = get(conf, 'tcp.listen', env, '127.0.0.1:9000')
        if tcp:
            check(ports.get('tcp') == port_of(tcp), '%s: port tcp is not %s' % (name, tcp))
            check(not tcp.startswith('127.'), '%s: TCP listens on loopback' % name)
        check(not listen.startswith('127.'), '%s: HTTP listens on loopback' % name)
        for probe, path in (('readinessProbe', '/readyz'), ('livenessProbe', '/healthz')):
            g = c.get(probe, {}).get('httpGet', {})
            check(g.get('path') == path and g.get('port') in ('http', port_of(listen)),
                  '%s: %s is %s' % (name, probe, g))
        grace = spec.get('terminationGracePeriodSeconds', 30)
        check(grace > duration_s(get(conf, 'shutdown.timeout', env, '10s')),
              '%s: terminationGracePeriodSeconds %s is not over shutdown.timeout' % (name, grace))
        check(spec.get('securityContext', {}).get('runAsNonRoot') is True, name + ' may run as root')
        check('cpu' in c.get('resources', {}).get('requests', {}), name + ' requests no CPU')
        role = get(conf, 'role', env)
        check(role in name, '%s runs role %s' % (name, role))
        secret_file = get(conf, 'tablestore.access_key_secret_file', env)
        if role == 'aggregator':
            check(dep['spec']['replicas'] <= int(get(conf, 'stream.partitions', env, 12)),
                  name + ': more replicas than partitions')
            check(secret_file, name + ': no tablestore.access_key_secret_file')
        if secret_file:
            sdir, sname = os.path.split(secret_file)
            svol = vols[mounts[sdir]['name']]
            check(svol['secret']['secretName'] == 'streamgate-secrets' and
                  any(i['path'] == sname and i['key'] in secret_keys for i in svol['secret']['items']),
                  name + ': the AccessKey secret is not mounted where the configuration reads it')
        labels = pod['metadata']['labels']
        svc = by['Service'].get(name)
        check(svc and svc['spec']['selector'].items() <= labels.items(),
              name + ': no Service selects its pods')
        if svc:
            for p in svc['spec']['ports']:
                check(p['targetPort'] in ports, '%s Service: targetPort %s' % (name, p['targetPort']))
        pdb = by['PodDisruptionBudget'].get(name)
        check(pdb and pdb['spec']['selector']['matchLabels'].items() <= labels.items(),
              name + ': no PodDisruptionBudget selects its pods')
    hpa = by['HorizontalPodAutoscaler']['streamgate-gateway']['spec']
    check(hpa['scaleTargetRef'] == {'apiVersion': 'apps/v1', 'kind': 'Deployment',
                                    'name': 'streamgate-gateway'}, 'the HPA scales %s' % hpa['scaleTargetRef'])
    check([m['resource']['name'] for m in hpa['metrics']] == ['cpu'], 'the HPA is not on CPU')
    sm = by['ServiceMonitor']['streamgate']['spec']
    for name in deps:
        svc = by['Service'][name]
        check(sm['selector']['matchLabels'].items() <= svc['metadata']['labels'].items(),
              'the ServiceMonitor does not select Service ' + name)
        check(any(p['name'] == e['port'] for p in svc['spec']['ports'] for e in sm['endpoints']),
              'Service %s has no port the ServiceMonitor scrapes' % name)
    rule = by['PrometheusRule']['streamgate']
    alerts = yaml.safe_load(open(os.path.join(D, 'prometheus/alerts.yml')))
    check(rule['spec']['groups'] == alerts['groups'],
          'kubernetes/prometheusrule.yaml differs from prometheus/alerts.yml '
          '(regenerate: tests/deploy/test_deploy.py . --write-prometheusrule)')


def write_prometheusrule():
    rules = yaml.safe_load(open(os.path.join(D, 'prometheus/alerts.yml')))
    text = open(os.path.join(D, 'kubernetes/prometheusrule.yaml')).read()
    head = text[:text.index('spec:\n') + len('spec:\n')]

    class Dumper(yaml.SafeDumper):
        pass
    Dumper.add_representer(str, lambda d, s: d.represent_scalar(
        'tag:yaml.org,2002:str', s, style='|' if '\n' in s else None))
    body = yaml.dump({'groups': rules['groups']}, Dumper=Dumper, sort_keys=False, width=100)
    open(os.path.join(D, 'kubernetes/prometheusrule.yaml'), 'w').write(
        head + ''.join('  ' + l if l.strip() else l for l in body.splitlines(True)))


# --- Prometheus rules -----------------------------------------------------------------------

def check_rules():
    promtool = os.environ.get('SG_PROMTOOL') or 'promtool'
    r = subprocess.run([promtool, 'check', 'rules', os.path.join(D, 'prometheus/alerts.yml')],
                       capture_output=True, text=True)
    check(r.returncode == 0, 'promtool check rules: ' + r.stdout + r.stderr)
    r = subprocess.run([promtool, 'test', 'rules', 'alerts_test.yml'], capture_output=True,
                       text=True, cwd=os.path.join(D, 'prometheus/tests'))
    check(r.returncode == 0 and 'SUCCESS' in r.stdout, 'promtool test rules: ' + r.stdout + r.stderr)
    rules = yaml.safe_load(open(os.path.join(D, 'prometheus/alerts.yml')))
    alerts = {r['alert'] for g in rules['groups'] for r in g['rules'] if 'alert' in r}
    tests = yaml.safe_load(open(os.path.join(D, 'prometheus/tests/alerts_test.yml')))
    fires, quiet = set(), set()
    for t in tests['tests']:
        for a in t.get('alert_rule_test', []):
            (fires if a['exp_alerts'] else quiet).add(a['alertname'])
    check(alerts <= fires, 'alerts never shown firing in a test: %s' % sorted(alerts - fires))
    check(alerts <= quiet, 'alerts never shown quiet in a test: %s' % sorted(alerts - quiet))
    for name in ('IngestPaused', 'TablestoreNotReady', 'WriterStalled', 'DeadLetters',
                 'RecordsFailed', 'ConsumerLagGrowing', 'LoopLag', 'BudgetNearLimit',
                 'RejectionsSpiking'):
        check('Streamgate' + name in alerts, 'no alert Streamgate' + name)


# --- systemd --------------------------------------------------------------------------------

def unit_settings(text):
    out = {}
    for line in text.splitlines():
        if '=' in line and not line.startswith('#'):
            k, v = line.split('=', 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def check_systemd():
    units = sorted(glob.glob(D + '/*.service'))
    check(len(units) == 3, 'systemd units: %s' % units)
    tmp = tempfile.mkdtemp(prefix='sg-units-')
    try:
        names = []
        for path in units:
            text = open(path).read()
            name = os.path.basename(path)
            s = unit_settings(text)
            (exec_start,) = s['ExecStart']
            argv = shlex.split(exec_start)
            check(argv[0] == '/usr/local/bin/streamgate', name + ': ExecStart ' + argv[0])
            cfile = argv[argv.index('--config') + 1]
            local = os.path.join(D, os.path.basename(cfile))
            check(cfile == '/etc/streamgate/' + os.path.basename(cfile) and os.path.exists(local),
                  name + ': its configuration is not one of deploy/')
            conf = check_config('systemd ' + name, open(local).read())
            instance = name.replace('@.service', '@0.service')
            state = ['/var/lib/' + d for d in s.get('StateDirectory', [])]
            logs = ['/var/log/' + d for d in s.get('LogsDirectory', [])]
            for opt in ('output.file', 'output.results_file', 'output.late_file',
                        'output.anomaly_file', 'output.dead_letter_file'):
                f = get(conf, opt)
                if f and f != '-':
                    check(any(f.startswith(d + '/') for d in state + logs),
                          '%s: %s %s is outside StateDirectory/LogsDirectory' % (name, opt, f))
            secret = get(conf, 'tablestore.access_key_secret_file')
            if get(conf, 'tablestore.endpoint'):
                creds = dict(c.split(':', 1) for c in s.get('LoadCredential', []))
                want = '/run/credentials/%s/' % instance
                check(secret and secret.startswith(want) and secret[len(want):] in creds,
                      '%s: the AccessKey is not read through LoadCredential' % name)
            stop = s.get('TimeoutStopSec', ['90s'])[0]
            stop = duration_s(stop + 's' if stop.isdigit() else stop)  # systemd: plain seconds
            check(stop > duration_s(get(conf, 'shutdown.timeout', None, '10s')),
                  name + ': TimeoutStopSec is not over shutdown.timeout')
            if name == 'streamgate.service':
                check(get(conf, 'http.listen').startswith('127.0.0.1:') and
                      get(conf, 'tcp.listen').startswith('127.0.0.1:'),
                      'deploy/streamgate.json does not listen on loopback')
                check(get(conf, 'http.auth_tokens'), 'deploy/streamgate.json has no tokens')
                check(state and logs and s.get('LoadCredential'),
                      'streamgate.service lacks StateDirectory, LogsDirectory or LoadCredential')
            out = os.path.join(tmp, instance)
            open(out, 'w').write(text.replace('/usr/local/bin/streamgate', os.environ['SG_BINARY']))
            names.append(out)
        r = subprocess.run(['systemd-analyze', 'verify', '--man=no'] + names,
                           capture_output=True, text=True)
        check(r.returncode == 0 and not (r.stdout + r.stderr).strip(),
              'systemd-analyze verify: %d %s%s' % (r.returncode, r.stdout, r.stderr))
        # The check itself: a misspelt setting is reported.
        bad = os.path.join(tmp, 'streamgate-misspelt.service')
        open(bad, 'w').write(open(names[0]).read().replace('[Service]\n', '[Service]\nRestrt=no\n'))
        r = subprocess.run(['systemd-analyze', 'verify', '--man=no', bad], capture_output=True,
                           text=True)
        check('Restrt' in r.stderr, 'systemd-analyze verify does not report a misspelt key')
    finally:
        shutil.rmtree(tmp)


def main():
    if '--write-prometheusrule' in sys.argv:
        write_prometheusrule()
        return
    parse_all()
    check_rules()
    image_conf, image_env = check_container()
    check_compose(image_conf, image_env)
    check_kubernetes()
    check_systemd()
    print('%d passed, %d failed' % (checks[0] - len(failures), len(failures)))
    sys.exit(1 if failures else 0)


if __name__ == '__main__':
    main()
