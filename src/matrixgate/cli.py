"""``matrixgate``: the command line of Matrix Gate.

  matrixgate demo [--state DIR]        run the embedded gate (master + local workers)
  matrixgate check [MATRIX] [WORKERS]  validate matrix and worker files
  matrixgate probe [...]               probe this host for KVM/QEMU (nested-kvm-check)
  matrixgate evidence verify PATH      check an evidence directory or bundle
  matrixgate user add NAME [--role R]  add or update a web user (password from stdin)
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from .settings import PROJECT_ROOT


def cmd_check(args) -> int:
    from . import loader
    code = 0
    matrix = workers = None
    try:
        matrix = loader.load_matrix(Path(args.matrix))
    except loader.DataError as exc:
        print(exc, file=sys.stderr)
        code = 1
    try:
        workers = loader.load_workers(Path(args.workers))
    except loader.DataError as exc:
        print(exc, file=sys.stderr)
        code = 1
    if matrix and workers:
        for warning in loader.legs_without_workers(matrix, workers):
            print(f"warning: {warning}", file=sys.stderr)
        print(f"OK: {len(matrix.enabled_legs)} enabled legs, {len(workers.workers)} workers")
    return code


def cmd_user(args) -> int:
    from . import users
    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("password: ")
    if len(password) < 10:
        print("refused: use a password of at least 10 characters", file=sys.stderr)
        return 2
    path = Path(args.secrets_dir) / users.FILE_NAME
    user = users.set_user(path, args.name, password, tuple(args.role))
    print(f"user {user.name} saved with roles: users{''.join(',' + r for r in user.roles)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["probe"]:
        from .onworker import probe
        return probe.main(argv[1:])
    if argv[:1] == ["evidence"]:
        from . import evidence
        return evidence.main(argv[1:])
    parser = argparse.ArgumentParser(prog="matrixgate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the embedded gate")
    demo.add_argument("--state", default=str(PROJECT_ROOT / "state"))
    check = sub.add_parser("check", help="validate matrix and worker files")
    check.add_argument("matrix", nargs="?", default=str(PROJECT_ROOT / "matrix" / "matrix.yaml"))
    check.add_argument("workers", nargs="?", default=str(PROJECT_ROOT / "workers" / "workers.yaml"))
    user = sub.add_parser("user", help="manage web users")
    user_sub = user.add_subparsers(dest="action", required=True)
    add = user_sub.add_parser("add")
    add.add_argument("name")
    add.add_argument("--role", action="append", default=[], help="e.g. releasers (repeatable)")
    add.add_argument("--secrets-dir", default=str(PROJECT_ROOT / "state" / "master" / "secrets"))
    sub.add_parser("probe", help="probe this host (see nested-kvm-check --help)")
    sub.add_parser("evidence", help="evidence verify PATH")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from . import demo as demo_mod
        return demo_mod.run(Path(args.state))
    if args.command == "check":
        return cmd_check(args)
    return cmd_user(args)


if __name__ == "__main__":
    sys.exit(main())
