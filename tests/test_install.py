"""The package as a user installs it: a wheel built from the source, installed into a fresh venv,
both programs run from an empty directory - the controller migrates and serves its web page, an
agent's responder and `vks-agent test` give a judged report - with nothing read from the checkout.

Quick: the wheel's dependencies are not downloaded again; a .pth file in the fresh venv points at
the site-packages of the venv running this test (the interpreter's own, computed, not hard-coded).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import urllib.request
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.procs import REPO, free_port, stop, token_file, wait_http

pytestmark = pytest.mark.timeout(240)

PACKAGES = ("agent", "controller", "contract")
# What the programs read besides their modules (package data, found with importlib.resources).
DATA = ("contract/thresholds.yaml", "controller/templates/act.html", "controller/sample_sites.yaml",
        "controller/store/migrations/env.py", "controller/store/migrations/script.py.mako",
        "controller/web/static/index.html", "controller/web/static/app.js", "controller/web/static/style.css",
        "controller/web/i18n/kk.json", "controller/web/i18n/ru.json", "controller/web/i18n/en.json")


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(argv)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def _build_wheel(tmp: Path) -> Path:
    """The wheel, built from a copy of the source (the shared checkout gets no build/ directory)."""
    src = tmp / "src"
    for name in PACKAGES:
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(src)]
    if int(version("setuptools").split(".")[0]) >= 77:
        argv.insert(5, "--no-build-isolation")       # build with the setuptools already here: no download
    _run(argv, tmp, dict(os.environ))
    [wheel] = (tmp / "dist").glob("vks_connectivity-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    """A new venv with only the wheel installed; the dependencies through a .pth to this venv's."""
    venv = tmp / "fresh"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, dict(os.environ))
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
          str(wheel)], tmp, dict(os.environ))
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    deps = sysconfig.get_paths(vars={"base": sys.prefix, "platbase": sys.prefix})["purelib"]
    (purelib / "zz_vks_test_dependencies.pth").write_text(deps + "\n", encoding="utf-8")
    return venv


def _get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode("utf-8")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv, env, empty cwd): the wheel installed into a fresh venv, an environment without
    PYTHONPATH or VKS_ settings, and an empty working directory."""
    tmp = tmp_path_factory.mktemp("install")
    wheel = _build_wheel(tmp)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    missing = [p for p in DATA if p not in names]
    # Every file of the web page, the self-check link's page included (a new folder must be named in
    # pyproject's package-data, or the installed controller serves a 404 where the page should be).
    missing += [rel for p in sorted((REPO / "controller/web").rglob("*"))
                if p.is_file() and p.suffix in (".html", ".css", ".js", ".json")
                and (rel := p.relative_to(REPO).as_posix()) not in names]
    missing += [f"controller/store/migrations/versions/{p.name}"
                for p in (REPO / "controller/store/migrations/versions").glob("*.py")
                if f"controller/store/migrations/versions/{p.name}" not in names]
    assert not missing, f"not in the wheel: {missing}"
    venv = _fresh_venv(tmp, wheel)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("VKS_")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    cwd = tmp / "empty"
    cwd.mkdir()
    return venv, env, cwd


def test_the_installed_copies_are_imported(installed):
    venv, env, cwd = installed
    r = _run([str(venv / "bin" / "python"), "-c", "import agent, contract, controller; "
              "print(agent.__file__, contract.__file__, controller.__file__)"], cwd, env)
    for path in r.stdout.split():
        assert Path(path).is_relative_to(venv), (path, venv)
        assert not Path(path).is_relative_to(REPO)


def test_controller_migrates_and_serves_the_page_from_an_empty_directory(installed, tmp_path):
    venv, env, cwd = installed
    ctl = str(venv / "bin" / "vks-controller")
    db = f"sqlite:///{tmp_path / 'controller.sqlite'}"
    _run([ctl, "migrate", "--db", db], cwd, env)
    port = free_port()
    config = tmp_path / "controller.yaml"
    config.write_text(f'listen: "127.0.0.1:{port}"\ndb: "{db}"\n', encoding="utf-8")
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([ctl, "serve", "--config", str(config)], cwd=cwd, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz", timeout=30, proc=proc)
        status, _, health = _get(base + "/healthz")
        assert status == 200 and json.loads(health)["status"] == "ok"
        status, ctype, page = _get(base + "/")
        assert status == 200 and ctype.startswith("text/html")
        assert '<script type="module" src="/static/app.js"></script>' in page
        for path in ("/static/app.js", "/static/views/hearings.js"):
            status, ctype, script = _get(base + path)
            assert status == 200 and "javascript" in ctype and "import " in script, path
        status, _, catalog = _get(base + "/i18n/kk.json")
        assert status == 200 and json.loads(catalog)
        # The act's template is package data too.
        _run([str(venv / "bin" / "python"), "-c",
              "from controller import act_render; act_render._jinja().get_template('act.html')"], cwd, env)
    finally:
        stop(proc)
        log.close()
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()
    assert list(cwd.iterdir()) == []


def test_a_judged_test_session_from_an_empty_directory(installed, tmp_path):
    venv, env, cwd = installed
    agent = str(venv / "bin" / "vks-agent")
    config = tmp_path / "agent.yaml"
    token = token_file(tmp_path)          # the responder's from its config, the caller's on its command line
    config.write_text(f"session:\n  host_addresses: ['127.0.0.1']\nresponder:\n  token_file: {token}\n",
                      encoding="utf-8")
    port = free_port()
    responder = subprocess.Popen([agent, "--config", str(config), "responder", "--listen", f"127.0.0.1:{port}"],
                                 cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=responder)
        r = subprocess.run([agent, "--config", str(config), "test", "--peer", f"http://127.0.0.1:{port}",
                            "--duration", "3", "--json", "--token-file", str(token)], cwd=cwd, env=env,
                           capture_output=True, text=True,
                           timeout=60)
    finally:
        stop(responder)
        responder.stderr.close()
    report = json.loads(r.stdout)
    assert report["verdict"] in ("good", "degraded", "unusable"), report
    assert r.returncode == {"good": 0, "degraded": 1, "unusable": 3}[report["verdict"]], r.stderr
    assert report["connected"] and report["inbound"]["packets"] > 0 and report["outbound"]["packets"] > 0, report
    assert list(cwd.iterdir()) == []
