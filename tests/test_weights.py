"""The weights registry, download/verify/locate and the ``weights`` command line, against a real HTTP
server on 127.0.0.1 standing in for the official hosts through the mirror option."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import random
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from weights_server import FileServer

from boost_core.weights import download as D
from boost_core.weights import catalogue as C
from boost_core.weights import store as W
from boost_core.cli.weights import main

ROOT = Path(__file__).resolve().parent.parent


def payload(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def official_path(name: str, index: int = 0) -> str:
    return urllib.parse.urlsplit(C.get(name).urls[index]).path


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch, tmp_path):
    for var in (W.ENV_MODELS, W.ENV_MIRROR, C.ENV_REGISTRY, "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # never touch the real user folder


@pytest.fixture
def server():
    with FileServer() as srv:
        yield srv


@pytest.fixture
def models(tmp_path) -> Path:
    return tmp_path / "models"


def make_entry(name="test_model", data: bytes | None = None, **changes) -> C.WeightFile:
    """A registry entry for a test payload, served at an 'official' address the mirror rewrites."""
    fields = dict(
        name=name, filename=f"{name}.pth", urls=(f"https://models.example.org/v1/{name}.pth",),
        size=None if data is None else len(data), sha256=None if data is None else sha(data),
        sha256_prefix=None, licence="MIT", licence_note="test", manual=False, manual_instructions="",
        networks=("test",),
    )
    fields.update(changes)
    return C.WeightFile(**fields)


def run_cli(*argv: str, **kwargs) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, stdin=kwargs.pop("stdin", io.StringIO()), **kwargs)
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------------------ registry
def test_registry_is_complete_and_consistent():
    assert C.names() == (
        "merge_net", "midas_v2", "midas_v21", "leres", "sgr", "dpt_beit_large_512", "dpt_hybrid_384",
        "dpt_large_384", "depth_anything_v2_small", "depth_anything_v2_base", "depth_anything_v2_large",
    )
    filenames = [w.filename for w in C.REGISTRY.values()]
    assert len(set(filenames)) == len(filenames)
    for w in C.REGISTRY.values():
        assert w is C.get(w.name)
        if w.sha256:
            assert re.fullmatch(r"[0-9a-f]{64}", w.sha256)
            assert w.sha256_prefix is None or w.sha256.startswith(w.sha256_prefix)
        assert w.licence and w.licence_note and w.networks
        assert w.manual == (not w.urls)
        for url in w.urls:
            assert url.startswith("https://")
            if "huggingface.co/lllyasviel" in url:
                assert re.search(r"/resolve/[0-9a-f]{40}/", url)
    assert C.get("merge_net").size == 318268048 and C.get("merge_net").requires_acceptance
    assert C.get("midas_v2").sha256 is None and C.get("midas_v2").sha256_prefix == "f46da743"
    assert C.get("sgr").manual and "1p8c8-nUTNry5usQmGdTC2TrwWrp3dQ0y" in C.get("sgr").manual_instructions
    with pytest.raises(C.UnknownWeightsError, match="known names: merge_net"):
        C.get("midas_v3")


def test_apply_mirror_keeps_the_path():
    url = C.get("merge_net").urls[0]
    path = urllib.parse.urlsplit(url).path
    assert W.apply_mirror(url, "http://10.0.0.5:8080") == "http://10.0.0.5:8080" + path
    assert W.apply_mirror(url, "http://mirror.lan/hf/") == "http://mirror.lan/hf" + path
    assert W.apply_mirror(url, "file:///srv/models") == "file:///srv/models" + path
    assert W.apply_mirror(url, None) == url
    with pytest.raises(ValueError, match="base address"):
        W.apply_mirror(url, "mirror.lan")


def test_models_dir_from_env_and_override(monkeypatch, tmp_path):
    if sys.platform.startswith("linux"):
        assert W.default_models_dir() == tmp_path / "xdg" / "boost-depth" / "models"
    monkeypatch.setenv(W.ENV_MODELS, str(tmp_path / "env-models"))
    assert W.default_models_dir() == tmp_path / "env-models"
    assert W.models_dir() == tmp_path / "env-models"
    assert W.models_dir(tmp_path / "other") == tmp_path / "other"
    assert W.path_of("leres") == tmp_path / "env-models" / "res101.pth"


# ------------------------------------------------------------------------------------ download/verify
def test_download_through_mirror_verifies_and_stamps(server, models):
    data = payload(600_000, seed=1)
    entry = make_entry(data=data)
    server.add("/pfx/v1/test_model.pth", data)
    events = []

    path = W.download(entry, models, mirror=server.url + "/pfx", progress=events.append)

    assert path == models / "test_model.pth" and path.read_bytes() == data
    assert [r.path for r in server.requests] == ["/pfx/v1/test_model.pth"]
    assert events[-1].state == "done"
    assert W.status(entry, models) == "ok"
    assert W.locate(entry, models) == path
    assert not W.tofu_path(path).exists()  # a published hash needs no TOFU record
    # A second download is a no-op: no request.
    assert W.download(entry, models, mirror=server.url + "/pfx") == path
    assert len(server.requests) == 1


def test_cheap_status_trusts_the_stamp_until_the_file_changes(server, models):
    data = payload(50_000, seed=2)
    entry = make_entry(data=data)
    server.add("/v1/test_model.pth", data)
    path = W.download(entry, models, mirror=server.url)
    stamp = json.loads(W.stamp_path(path).read_text())
    assert stamp["sha256"] == sha(data) and stamp["size"] == len(data)
    # Proof that the cheap check reads the stamp instead of hashing: a stamp claiming another hash.
    W.stamp_path(path).write_text(json.dumps(dict(stamp, sha256="0" * 64)))
    assert W.status(entry, models) == "corrupt"
    assert W.status(entry, models, full_check=True) == "ok"  # hashing rewrites the stamp
    assert W.status(entry, models) == "ok"
    W.stamp_path(path).unlink()
    assert W.status(entry, models) == "unverified"
    assert W.locate(entry, models) == path  # locate hashes an unverified file once
    assert W.status(entry, models) == "ok"


def test_tofu_records_first_hash_and_catches_later_corruption(server, models):
    first = payload(80_000, seed=3)
    entry = make_entry(data=None)  # no size, no hash published
    route = server.add("/v1/test_model.pth", first)
    path = W.download(entry, models, mirror=server.url)

    assert W.tofu_path(path).read_text() == f"{sha(first)}  test_model.pth\n"
    assert W.recorded_sha256(path) == sha(first)
    assert W.status(entry, models) == "ok"

    damaged = bytearray(first)
    damaged[1234] ^= 0xFF
    path.write_bytes(bytes(damaged))
    assert W.verify(entry, models) == "corrupt"
    with pytest.raises(W.CorruptWeightsError, match="damaged"):
        W.locate(entry, models)

    # Downloading again replaces the damaged copy with one matching the recorded hash.
    W.download(entry, models, mirror=server.url)
    assert path.read_bytes() == first and W.verify(entry, models) == "ok"

    # Upstream now serves other bytes: refused, with a hint about the TOFU record.
    path.unlink()
    route.data = payload(80_000, seed=4)
    with pytest.raises(D.IntegrityError) as err:
        W.download(entry, models, mirror=server.url)
    assert ".sha256" in err.value.hint
    assert not path.exists() and not D.part_path(path).exists()


def test_real_entry_via_mirror_wrong_size_leaves_nothing(server, models):
    server.add(official_path("merge_net"), payload(1000, seed=5))
    with pytest.raises(D.DownloadError, match="expected 318268048") as err:
        W.download("merge_net", models, mirror=server.url)
    assert "HTTP 404" in str(err.value)  # the second official source is not on this mirror
    assert [r.path for r in server.requests] == [official_path("merge_net"), official_path("merge_net", 1)]
    assert sorted(p.name for p in models.iterdir()) == []


def test_real_entry_via_mirror_second_source_and_prefix_check(server, models):
    # midas_v2: size unknown, only the torch.hub prefix f46da743 is known. Fake bytes fail it.
    server.add(official_path("midas_v2"), payload(20_000, seed=6))
    with pytest.raises(D.IntegrityError, match="f46da743"):
        W.download("midas_v2", models, mirror=server.url)
    assert list(models.iterdir()) == []
    # dpt_hybrid_384: the first source is missing on the mirror, the second is tried next.
    server.add(official_path("dpt_hybrid_384", 1), payload(1000, seed=7))
    with pytest.raises(D.DownloadError) as err:
        W.download("dpt_hybrid_384", models, mirror=server.url)
    assert [r.path for r in server.requests[1:]] == [official_path("dpt_hybrid_384", i) for i in (0, 1)]
    assert "HTTP 404" in str(err.value) and "serves 1000 bytes" in str(err.value)


def test_mirror_without_the_file_gives_a_hint(server, models):
    with pytest.raises(D.NotFoundError) as err:
        W.download("leres", models, mirror=server.url + "/internal")
    assert "/internal" + official_path("leres") == server.requests[0].path
    assert official_path("leres") in err.value.hint


def test_manual_file_cannot_be_downloaded(models):
    with pytest.raises(W.ManualDownloadRequired) as err:
        W.download("sgr", models)
    assert "drive.google.com" in str(err.value) and str(models / "model.pth.tar") in err.value.hint


def test_locate_missing_says_how_to_get_it(models):
    with pytest.raises(W.MissingWeightsError) as err:
        W.locate("leres", models)
    msg = str(err.value)
    assert f"python -m boost_core weights download leres --models-dir {models}" in msg
    assert "non-commercial" in msg.lower() and "res101.pth" in msg
    with pytest.raises(W.MissingWeightsError, match="Google Drive"):
        W.locate("sgr", models)


def test_truncated_file_is_corrupt_without_hashing(models):
    models.mkdir()
    (models / "latest_net_G.pth").write_bytes(b"\0" * 1000)
    rep = W.inspect("merge_net", models)
    assert rep.status == "corrupt" and "expected 318268048" in rep.detail
    with pytest.raises(W.CorruptWeightsError):
        W.locate("merge_net", models)


def test_partial_download_is_reported(server, models):
    data = payload(300_000, seed=8)
    entry = make_entry(data=data)
    server.add("/v1/test_model.pth", data, drop_at=100_000, drops=1)
    with pytest.raises(D.ConnectionDropped):
        W.download(entry, models, mirror=server.url, retries=0)
    rep = W.inspect(entry, models)
    assert rep.status == "missing" and rep.partial == 100_000 and "resumes" in rep.detail
    W.download(entry, models, mirror=server.url)
    assert W.status(entry, models) == "ok"
    assert server.requests[-1].headers["Range"] == "bytes=100000-"


# ----------------------------------------------------------------------------------------------- CLI
def test_cli_list_table(models):
    models.mkdir()
    (models / "latest_net_G.pth").write_bytes(b"short")
    code, out, _ = run_cli("list", "--models-dir", str(models))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"Models folder: {models}"
    assert lines[1].split() == ["NAME", "FILE", "SIZE", "LICENCE", "STATUS", "LOCATION"]
    rows = {line.split()[0]: line for line in lines[2:] if not line.startswith("!")}
    assert set(rows) == set(C.names())
    assert "corrupt" in rows["merge_net"] and str(models / "latest_net_G.pth") in rows["merge_net"]
    assert "318.3 MB" in rows["merge_net"] and "Academic use only" in rows["merge_net"]
    assert "missing" in rows["leres"] and "manual" in rows["sgr"]
    code, out, _ = run_cli("list", "--json", "--models-dir", str(models))
    data = {d["name"]: d for d in json.loads(out)}
    assert data["merge_net"]["status"] == "corrupt" and data["midas_v21"]["status"] == "missing"


def test_cli_verify_truncated_file_exits_nonzero(models):
    models.mkdir()
    (models / "res101.pth").write_bytes(b"\0" * 10)
    code, out, err = run_cli("verify", "--models-dir", str(models))
    assert code == 1
    assert re.search(r"^leres\s+corrupt", out, re.M) and re.search(r"^merge_net\s+missing", out, re.M)
    assert "download leres" in err
    code, out, _ = run_cli("verify", "merge_net", "--models-dir", str(models))
    assert code == 3  # a named file is missing, none corrupt
    (models / "res101.pth").unlink()
    assert run_cli("verify", "--models-dir", str(models))[0] == 0  # missing files alone: success


def test_cli_verify_records_tofu_then_catches_corruption(models, monkeypatch):
    models.mkdir()
    monkeypatch.setenv(W.ENV_MODELS, str(models))
    f = models / "model.pth.tar"
    f.write_bytes(payload(5000, seed=9))
    code, out, _ = run_cli("verify", "sgr")
    assert code == 0 and "recorded" in out
    assert W.recorded_sha256(f) == sha(f.read_bytes())
    data = bytearray(f.read_bytes())
    data[10] ^= 1
    f.write_bytes(bytes(data))
    code, out, _ = run_cli("verify", "sgr", "--progress", "json")
    assert code == 1
    events = [json.loads(line) for line in out.splitlines()]
    (verified,) = [e for e in events if e["event"] == "verified"]
    assert verified["name"] == "sgr" and verified["status"] == "corrupt"
    assert events[-1] == {"event": "summary", "ok": 0, "corrupt": 1, "missing": 0}


def test_cli_path(models):
    code, out, _ = run_cli("path", "--models-dir", str(models))
    assert code == 0 and out.strip() == str(models)
    code, out, err = run_cli("path", "merge_net", "--models-dir", str(models))
    assert code == 1 and out.strip() == str(models / "latest_net_G.pth") and "download merge_net" in err


def test_cli_unknown_name_is_a_usage_error(models):
    code, _, err = run_cli("download", "midas_v9", "--models-dir", str(models), "--yes")
    assert code == 2 and "known names" in err


def test_cli_refuses_restricted_licence_without_tty_or_yes(server, models, engine_env):
    env = dict(engine_env, BOOST_DEPTH_MIRROR=server.url, BOOST_DEPTH_MODELS=str(models),
               no_proxy="127.0.0.1")
    cmd = [sys.executable, "-c",
           "import sys; from boost_core.cli.weights import main; sys.exit(main(sys.argv[1:]))",
           "download", "merge_net"]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert "--yes" in proc.stderr and "Academic use only" in proc.stderr
    assert server.requests == []


def test_cli_download_json_events_on_failure(server, models):
    server.add(official_path("merge_net"), payload(1000, seed=10))
    code, out, err = run_cli("download", "merge_net", "--yes", "--mirror", server.url,
                             "--models-dir", str(models), "--progress", "json")
    assert code == 1
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in events] == ["start", "error", "summary"]
    assert events[0]["sources"] == [server.url + official_path("merge_net", i) for i in (0, 1)]
    assert "expected 318268048" in events[1]["message"] and events[1]["hint"]
    assert events[2] == {"event": "summary", "ok": 0, "failed": 1}
    assert list(models.iterdir()) == []


def test_cli_download_success_with_env_mirror(server, models, monkeypatch):
    data = payload(1_500_000, seed=11)
    entry = make_entry(data=data, requires_acceptance=True, licence="Academic use only")
    server.add("/v1/test_model.pth", data, chunk_delay=0.002)
    monkeypatch.setenv(W.ENV_MIRROR, server.url)
    monkeypatch.setenv(W.ENV_MODELS, str(models))
    registry = {entry.name: entry}

    # An interactive "no" downloads nothing...
    tty_no = io.StringIO("n\n")
    tty_no.isatty = lambda: True
    code, _, err = run_cli("download", "test_model", registry=registry, stdin=tty_no)
    assert code == 2 and "Accept the licence" in err and server.requests == []

    # ...an interactive "y" downloads.
    tty_yes = io.StringIO("y\n")
    tty_yes.isatty = lambda: True
    code, out, err = run_cli("download", "test_model", "--progress", "json", registry=registry, stdin=tty_yes)
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-2:] == ["done", "summary"]
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1]["done"] == len(data) and progress[-1]["of"] == len(data)
    assert progress[-1]["fraction"] == 1.0 and all("rate" in e and "eta" in e for e in progress)
    assert events[-2]["status"] == "ok" and events[-2]["sha256"] == sha(data)
    assert (models / "test_model.pth").read_bytes() == data

    code, out, _ = run_cli("list", registry=registry)
    assert code == 0 and re.search(r"^test_model\s.*\sok\s", out, re.M)


def test_entry_is_a_plain_frozen_dataclass():
    entry = make_entry(data=b"x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.size = 3  # type: ignore[misc]


# ------------------------------------------------------------------------------------- studio registry
def test_a_studio_registry_file_adds_and_overrides_entries(server, models, tmp_path, monkeypatch):
    data = payload(300_000, seed=7)
    server.add("/internal/merge_ft.pth", data)
    registry_file = tmp_path / "studio.json"
    registry_file.write_text(json.dumps({"weights": [
        {"name": "merge_net", "filename": "latest_net_G.pth", "urls": [server.url + "/internal/merge_ft.pth"],
         "size": len(data), "sha256": sha(data), "licence": "studio internal"},
        {"name": "studio_extra", "filename": "extra.pth", "urls": [], "manual": True,
         "manual_instructions": "ask the pipeline team", "licence": "internal"},
    ]}))
    monkeypatch.setenv(C.ENV_REGISTRY, str(registry_file))
    assert C.names()[-1] == "studio_extra" and "midas_v2" in C.names()
    assert C.get("merge_net").licence == "studio internal"
    code, out, err = run_cli("download", "merge_net", "--models-dir", str(models), "--yes", "--progress", "none")
    assert code == 0, err
    assert (models / "latest_net_G.pth").read_bytes() == data
    code, out, _ = run_cli("list", "--models-dir", str(models))
    assert "studio_extra" in out and "studio internal" in out
    monkeypatch.delenv(C.ENV_REGISTRY)
    assert C.get("merge_net").licence != "studio internal"  # the official entry again


def test_a_broken_studio_registry_file_is_a_clear_error(tmp_path, monkeypatch):
    bad = tmp_path / "studio.json"
    bad.write_text('{"weights": [{"filename": "no-name.pth"}]}')
    monkeypatch.setenv(C.ENV_REGISTRY, str(bad))
    with pytest.raises(C.UnknownWeightsError, match="BOOST_DEPTH_REGISTRY=.*not a weights registry file"):
        C.names()
    monkeypatch.setenv(C.ENV_REGISTRY, str(tmp_path / "absent.json"))
    with pytest.raises(C.UnknownWeightsError, match="cannot read it"):
        C.get("merge_net")
