"""tools.passes, the technician/issuer CLI, as a real process: secret, keygen, issue, verify, revoke."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gateway.verifier import parse_revocations, parse_trust_list
from sim.services import ROOT, python_env
from tests.gateway_verdicts.conftest import HOLDER


def cli(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.passes", *args], input=stdin, capture_output=True, text=True,
                          env=env or python_env(), cwd=ROOT, timeout=30)


def test_issue_verify_revoke_round_trip(tmp_path: Path) -> None:
    secret, key, trust, revs = (tmp_path / n for n in ("district.secret", "issuer.key", "trust.json", "rev.json"))
    assert cli("secret", "--out", str(secret)).returncode == 0
    assert secret.stat().st_mode & 0o777 == 0o600
    assert cli("secret", "--out", str(secret)).returncode == 2  # never silently replaced
    r = cli("keygen", "--kid", "gz-health-2026", "--key", str(key), "--trust-list", str(trust),
            "--valid-from", "2026-01-01", "--kinds", "health")
    assert r.returncode == 0, r.stderr
    assert key.stat().st_mode & 0o777 == 0o600
    assert parse_trust_list(trust)["gz-health-2026"].valid_from == 1767225600
    r = cli("issue", "--key", str(key), "--color", "yellow", "--issued-at", "2026-03-01T08:00:00",
            "--valid-for", "7d", stdin=HOLDER + "\n")
    assert r.returncode == 0, r.stderr
    qr = r.stdout.strip()
    env = dict(python_env(), CHECKPOINT_DISTRICT_SECRET_FILE=str(secret))
    check = ("verify", "--trust-list", str(trust), "--revocations", str(revs), "--at", "2026-03-02")
    revs.write_text('{"v": 1, "revoked": []}')
    r = cli(*check, stdin=qr, env=env)
    assert r.returncode == 0, r.stderr
    ok = json.loads(r.stdout)
    assert ok["color"] == "yellow" and ok["valid"] and ok["reason"] == "ok" and len(ok["holder_ref"]) == 32
    assert json.loads(cli(*check[:-1], "2026-03-09", stdin=qr, env=env).stdout)["reason"] == "expired"
    # Revoke the holder's passes issued before a date: this one is, so it is refused.
    r = cli("revoke", "--revocations", str(revs), "--holder-stdin", "--issued-before", "2026-03-02",
            "--note", "re-issued", stdin=HOLDER, env=env)
    assert r.returncode == 0, r.stderr
    r = cli(*check, stdin=qr, env=env)
    assert r.returncode == 1 and json.loads(r.stdout)["reason"] == "revoked"
    assert HOLDER not in revs.read_text() and ok["holder_ref"] in revs.read_text()
    # One pass by its pass_ref.
    other = cli("issue", "--key", str(key), "--color", "green", "--issued-at", "2026-03-05", stdin="HZ-2\n").stdout
    assert json.loads(cli(*check[:-1], "2026-03-05T12:00", stdin=other, env=env).stdout)["reason"] == "ok"
    assert cli("revoke", "--revocations", str(revs), "--pass-stdin", stdin=other, env=env).returncode == 0
    assert json.loads(cli(*check[:-1], "2026-03-05T12:00", stdin=other, env=env).stdout)["reason"] == "revoked"
    assert len(parse_revocations(revs).passes) == 1 and "HZ-2" not in revs.read_text()


def test_help_and_clear_errors(tmp_path: Path) -> None:
    for sub in ("", "secret", "keygen", "issue", "verify", "revoke"):
        r = cli(*([sub] if sub else []), "--help")
        assert r.returncode == 0 and "usage:" in r.stdout
    env = {k: v for k, v in python_env().items() if not k.startswith("CHECKPOINT_")}
    r = cli("revoke", "--revocations", str(tmp_path / "r.json"), "--holder-stdin", stdin="X\n", env=env)
    assert r.returncode == 2 and "no district secret" in r.stderr
    (tmp_path / "bad.key").write_text("{}")
    r = cli("issue", "--key", str(tmp_path / "bad.key"), "--color", "green", stdin="H\n")
    assert r.returncode == 2 and "not an issuer key file" in r.stderr
    r = cli("issue", "--key", str(tmp_path / "bad.key"), "--color", "green", "--valid-for", "soon")
    assert r.returncode == 2 and "not a duration" in r.stderr
    assert not os.path.exists(tmp_path / "r.json")
