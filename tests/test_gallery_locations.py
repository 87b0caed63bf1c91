"""Index location strings and their failures: malformed strings, an unreachable or locked Milvus, no
pymilvus installed, secrets never echoed; and the plain install never importing pymilvus."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from viewfinder.errors import ConfigError, IndexBackendError
from viewfinder.retrieval import FolderLocation, MilvusLocation, parse_location

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **env})


def test_the_forms():
    assert parse_location("some/folder") == FolderLocation(Path("some/folder"))
    assert parse_location(Path("/abs")) == FolderLocation(Path("/abs"))
    lite = parse_location("milvus:///data/g.db?collection=shop")
    assert isinstance(lite, MilvusLocation) and lite.embedded and lite.collection == "shop"
    assert lite.uri == "/data/g.db" and str(lite) == "milvus:///data/g.db?collection=shop"
    server = parse_location("milvus://10.0.0.5?collection=shop")
    assert server.uri == "http://10.0.0.5:19530" and not server.embedded
    assert str(server) == "milvus://10.0.0.5:19530?collection=shop"
    tls = parse_location("milvus+https://milvus.example.com:443?collection=a_1")
    assert tls.uri == "https://milvus.example.com:443" and str(tls) == "milvus+https://milvus.example.com:443?collection=a_1"
    store = parse_location("milvus://127.0.0.1:19530", store=True)
    assert store.collection is None and store.with_collection("vf_x").collection == "vf_x"
    assert parse_location(str(tls)) == tls  # printing and parsing again gives the same location


@pytest.mark.parametrize("text, problem", [
    ("s3://bucket/index", "unsupported index location scheme 's3'"),
    ("milvus://host:19530", "must name its collection"),
    ("milvus://host:19530?collection=", "not valid for Milvus"),
    ("milvus://host:19530?collection=9lives", "not valid for Milvus"),
    ("milvus://host:19530?collection=a-b", "not valid for Milvus"),
    ("milvus://host:19530?collection=x__vf_lock", "reserves"),
    ("milvus://host:19530?collection=a&collection=b", "given twice"),
    ("milvus://host:19530?collection=a&db=x", "unknown Milvus location parameter(s) ['db']"),
    ("milvus://host:99999?collection=a", "malformed Milvus location"),
    ("milvus://host:0?collection=a", "port between 1 and 65535"),
    ("milvus://host:19530/db1?collection=a", "has no path"),
    ("milvus://:19530?collection=a", "needs a host"),
    ("milvus://relative/g.db?collection=a", "has no path"),
    ("milvus:///rel/../g.txt?collection=a", "must end in .db"),
    ("milvus+https:///abs/g.db?collection=a", "needs a host"),
    ("milvus://host?collection=a#frag", "no #fragment"),
    ("", "non-empty string"),
])
def test_malformed_locations_name_the_problem(text, problem):
    with pytest.raises(ConfigError) as caught:
        parse_location(text)
    assert problem in str(caught.value)


def test_a_store_has_no_collection_and_credentials_are_never_echoed():
    with pytest.raises(ConfigError, match="leave collection= out"):
        parse_location("milvus://h:1?collection=a", store=True)
    with pytest.raises(ConfigError) as caught:
        parse_location("milvus://root:Sup3rSecret@h:19530?collection=a")
    assert "Sup3rSecret" not in str(caught.value) and "MILVUS_TOKEN" in str(caught.value)


def test_unreachable_milvus_fails_within_seconds_without_the_token(monkeypatch):
    from viewfinder.retrieval import open_gallery

    monkeypatch.setenv("MILVUS_TOKEN", "tok-Sup3rSecret")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens once the socket closes
    started = time.monotonic()
    with pytest.raises(IndexBackendError) as caught:
        open_gallery(f"milvus://127.0.0.1:{port}?collection=g")
    assert time.monotonic() - started < 8
    assert f"cannot reach Milvus at http://127.0.0.1:{port}" in str(caught.value)
    assert "Sup3rSecret" not in str(caught.value)

    with socket.socket() as silent:  # accepts connections, never answers: the connect timeout ends it
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        started = time.monotonic()
        with pytest.raises(IndexBackendError, match="within 5 s"):
            open_gallery(f"milvus://127.0.0.1:{silent.getsockname()[1]}?collection=g")
        assert time.monotonic() - started < 10


def test_a_lite_file_open_in_another_process_is_a_clear_error(tmp_path):
    from viewfinder.retrieval import open_gallery

    db = tmp_path / "held.db"
    holder = subprocess.Popen([sys.executable, "-c", "from pymilvus import MilvusClient; import sys, time; "
                               f"MilvusClient({str(db)!r}); print('open', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(IndexBackendError, match="open in one process at a time.*milvus-lite server"):
            open_gallery(f"milvus://{db}?collection=g")
    finally:
        holder.kill()
        holder.wait()


def test_without_pymilvus_one_line_names_the_extra(tmp_path):
    result = run_python(f"""
        import sys
        sys.modules["pymilvus"] = None  # as if not installed
        from viewfinder.cli import main
        sys.argv = ["viewfinder", "index", "info", "milvus://{tmp_path}/g.db?collection=g"]
        main()
    """)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        'viewfinder: error: Milvus index locations need pymilvus: pip install "viewfinder[milvus]"']


def test_plain_paths_never_import_pymilvus(tmp_path):
    result = run_python(f"""
        import json, sys
        import numpy as np
        import viewfinder
        from viewfinder.retrieval import IndexData, gallery_info, migrate, open_gallery, update_gallery, write_gallery
        from viewfinder.serving import ServingConfig
        from viewfinder.serving.runtime import open_store
        x = np.eye(4, dtype=np.float32)
        write_gallery(IndexData.build(x, list("abcd"), index_type="Flat"), "{tmp_path}/a")
        update_gallery("{tmp_path}/a", lambda g: g.remove_labels(["b"]))
        migrate("{tmp_path}/a", "{tmp_path}/b")
        assert len(open_gallery("{tmp_path}/b")) == 3 and gallery_info("{tmp_path}/b")["backend"] == "faiss"
        open_store(ServingConfig(index_store="{tmp_path}/store")).create(open_gallery("{tmp_path}/b"))
        from click.testing import CliRunner
        from viewfinder.cli import cli
        removed = CliRunner().invoke(cli, ["index", "remove", "--index_dir", "{tmp_path}/b", "--labels", "a"])
        assert removed.exit_code == 0
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("pymilvus", "milvus_lite", "grpc"))))
    """)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_serving_settings_refuse_a_bad_store():
    from viewfinder.serving import ServingConfig

    with pytest.raises(ConfigError, match="leave collection= out"):
        ServingConfig(index_store="milvus://h:1?collection=a")
    with pytest.raises(ConfigError, match="exclude each other"):
        ServingConfig(index_store="milvus://h:1", index_storage="memory")
    with pytest.raises(ConfigError, match="unsupported index location scheme"):
        ServingConfig(index_store="redis://h")
