#!/usr/bin/env python3
"""Fails when a build, test or script file points outside the source tree.

A user's clone has nothing beside it, so every path the build, the tests and the scripts use
must resolve inside the repository. This reads every meson.build, C source, shell and Node.js
script under the source root and resolves each relative path it finds from the place it is
resolved from: a meson.build's own folder (or the project root after project_source_root()),
a C file's folder for #include, and both the file's folder and the root for anything else
(scripts change to the top before they use a path).

    self_contained.py SOURCE_ROOT     checks the tree; lists each escape and exits 1
    self_contained.py --self-test     checks that the checker itself catches what it must
"""
import os
import re
import sys

SKIP_DIRS = {'.git', 'node_modules', 'corpus'}
CHECKED_SUFFIXES = ('.c', '.h', '.sh', '.js', '.build', '.py')
CHECKED_NAMES = {'meson.build', 'meson_options.txt', 'run', 'test', 'deps'}

# A relative path that climbs: ../x, ../../x, or a bare '..' path component.
CLIMB = re.compile(r'''(?<![\w.\-/$])((?:\.\./)+[\w.\-/@]*|\.\.(?=['"\s/)]|$))''')
STRING = re.compile(r"'([^'\\\n]*)'|\"([^\"\\\n]*)\"")
MESON_ROOTS = {
    'meson.project_source_root()': 'root',
    'meson.source_root()': 'root',
    'meson.global_source_root()': 'root',
    'meson.current_source_dir()': 'here',
}
MESON_JOIN = re.compile(
    r"(meson\.(?:project_|global_)?source_root\(\)|meson\.current_source_dir\(\)|'[^'\n]*')"
    r"((?:\s*/\s*'[^'\n]*')+)")


def escapes(root, base, rel):
    """True when `rel`, taken from folder `base`, resolves outside `root`."""
    target = os.path.normpath(os.path.join(base, rel))
    return os.path.relpath(target, root).split(os.sep)[0] == '..'


def meson_escapes(root, here, line):
    """Paths a meson.build line builds with the / operator, resolved from where meson would."""
    found = []
    for m in MESON_JOIN.finditer(line):
        head, tail = m.group(1), m.group(2)
        parts = re.findall(r"'([^'\n]*)'", tail)
        if head in MESON_ROOTS:
            base = root if MESON_ROOTS[head] == 'root' else here
        else:
            base, parts = here, [head.strip("'")] + parts
        path = os.path.join(*parts) if parts else '.'
        if os.path.isabs(path):
            continue
        if escapes(root, base, path):
            found.append(m.group(0))
    return found


def check_file(root, path, text):
    here = os.path.dirname(path)
    is_meson = os.path.basename(path) in ('meson.build', 'meson_options.txt')
    problems = []
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith(('#', '//', '*', '/*')) and not stripped.startswith('#include'):
            continue
        if is_meson:
            joined = meson_escapes(root, here, line)
            if joined:
                problems.append((path, n, joined[0]))
                continue
        for s in STRING.finditer(line):
            literal = s.group(1) if s.group(1) is not None else s.group(2)
            # Meson and #include resolve from the file's folder; any other path may be used from the
            # file's folder or, by a script that changed to the top, from the root.
            bases = [here] if is_meson or stripped.startswith('#include') else [here, root]
            for c in CLIMB.finditer(literal):
                if any(escapes(root, base, c.group(1)) for base in bases):
                    problems.append((path, n, literal))
                    break
    return problems


def walk(root):
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        dirnames[:] = [d for d in dirnames
                       if d not in SKIP_DIRS and not (rel == '.' and d.startswith('build'))]
        for name in filenames:
            if name.endswith(CHECKED_SUFFIXES) or name in CHECKED_NAMES or \
                    os.path.basename(dirpath) in ('scripts', '.ci', 'bench'):
                yield os.path.join(dirpath, name)


def check_tree(root):
    root = os.path.abspath(root)
    problems = []
    for path in walk(root):
        if os.path.samefile(path, __file__):
            continue  # its own self-test cases
        try:
            with open(path, encoding='utf-8') as f:
                text = f.read()
        except (UnicodeDecodeError, OSError):
            continue
        problems += check_file(root, path, text)
    return root, problems


def self_test():
    root = '/src'
    cases = [
        # (file, line, should it be flagged)
        ('/src/tests/tablestore/meson.build',
         "d = meson.project_source_root() / '..' / 'beside' / 'tablestore' / 'vectors'", True),
        ('/src/tests/tablestore/meson.build', "d = meson.current_source_dir() / 'vectors'", False),
        ('/src/tests/fuzz/meson.build', "i = include_directories('../../src/ingest')", False),
        ('/src/tests/fuzz/meson.build', "i = include_directories('../../../beside')", True),
        ('/src/meson.build', "x = meson.current_source_dir() / '..' / 'other'", True),
        ('/src/tests/unit/test_x.c', '#include "../../src/stream/agg.h"', False),
        ('/src/tests/unit/test_x.c', '#include "../../../beside/x.h"', True),
        ('/src/tests/unit/test_x.c', 'const char *p = "../../../beside/tablestore/vectors";', True),
        ('/src/scripts/run', 'cd "$(dirname "$0")/.."', False),
        ('/src/scripts/run', 'cp "../beside/x" .', True),
        ('/src/tests/sdk/readback.js', "require('../../../beside/x')", True),
        ('/src/tests/sdk/readback.js', "require('./node_modules/tablestore')", False),
        ('/src/meson.build', "llhttp = '/usr/share/llhttp'", False),
    ]
    failed = 0
    for path, line, want in cases:
        got = bool(check_file(root, path, line + '\n'))
        if got != want:
            failed += 1
            print(f'self-test: {path}: {line!r}: flagged={got}, expected {want}')
    print(f'{len(cases) - failed} passed, {failed} failed')
    return 1 if failed else 0


def main(argv):
    if len(argv) == 2 and argv[1] == '--self-test':
        return self_test()
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    root, problems = check_tree(argv[1])
    for path, n, what in problems:
        print(f'{os.path.relpath(path, root)}:{n}: points outside the source tree: {what}')
    if problems:
        return 1
    print('every path the build, the tests and the scripts use stays inside the source tree')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
