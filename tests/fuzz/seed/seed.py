#!/usr/bin/env python3
"""Writes the starting corpora of the fuzz targets into corpus/<target>/ from real inputs: the
upstream vectors in shared/conformance (BuildKit parser, lexer and instruction vectors,
dockerignore vectors, kaniko's Dockerfiles), the repository's examples and hand-written
registry documents and headers. Run once from tests/fuzz/ (`python3 seed/seed.py ../../../shared/conformance`);
the committed corpora are what fuzzing and `cargo fuzz cmin` made of these since."""

import hashlib
import json
import os
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent.parent
REPO = HERE.parent.parent
CONF = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else REPO.parent / "shared" / "conformance")


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def files(root, name=None):
    for p in sorted(pathlib.Path(root).rglob("*")):
        if p.is_file() and (name is None or p.name.startswith(name)):
            yield p


# dockerfile: every Dockerfile we have.
for p in list(files(CONF / "buildkit-parser", "Dockerfile")) + list(
    files(CONF / "kaniko-dockerfiles", "Dockerfile")
) + list(files(REPO / "examples", "Dockerfile")):
    put("dockerfile", p.read_bytes())
vectors = json.loads((CONF / "buildkit-instructions" / "vectors.json").read_text())
for key in ("errors", "copy_heredoc", "run_heredoc"):
    for case in vectors[key]:
        put("dockerfile", "FROM busybox\n" + case["dockerfile"] + "\n")

# shell_word: a flags byte (0 = `\` escape, no switches), then the word.
lex = json.loads((CONF / "buildkit-shell" / "lex-vectors.json").read_text())
for key, group in lex.items():
    if isinstance(group, dict):
        for case in group.get("cases", []):
            if "input" in case:
                put("shell_word", b"\0" + case["input"].encode())
for name in ("envVarTest", "wordsTest"):
    for line in (CONF / "buildkit-shell" / name).read_text().splitlines():
        if line.startswith("#") or "|" not in line:
            continue
        if line[:2] in ("A|", "W|"):
            line = line[2:]
        word = line.rsplit("|", 1)[0].rstrip()
        put("shell_word", b"\0" + word.encode())
        put("shell_word", b"\x01" + word.replace("\\", "`").encode())

# dockerignore: the patterns, a NUL, the path.
for line in (CONF / "dockerignore" / "patterns.tsv").read_text().splitlines():
    if line.startswith("#") or not line.strip():
        continue
    cols = line.split("\t")
    if len(cols) >= 5:
        put("dockerignore", "\n".join(cols[5:]) + "\0" + cols[4])
for p in files(CONF / "dockerignore"):
    if p.name.endswith("dockerignore"):
        put("dockerignore", p.read_bytes())

# reference: upstream's vectors as kiln's tests carry them.
import re

tests = (REPO / "registry" / "src" / "reference" / "tests.rs").read_text()
for m in re.finditer(r'^\s*\("([^"\\]*)"', tests, re.M):
    put("reference", m.group(1))
for r in ("busybox", "localhost:5000/a/b:1.0", "[::1]:5000/x@sha256:" + "a" * 64,
          "docker.io/library/alpine:3.20@sha256:" + "0" * 64):
    put("reference", r + "\nv2")

# auth_challenge: a registry pick byte, then a header (or a token response).
for h in (
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push"',
    'Basic realm="Registry Realm"',
    'Basic realm="b", Bearer realm="https://t/x",service="s"',
    'bearer REALM="r" , Service=s,  error="insufficient_scope"',
    'Bearer realm="a\\"b\\\\c",scope="repository:host:5000/repo:pull"',
    'Bearer realm="http://127.0.0.1:5001/token?x=1",service="s",scope="repository:a:push repository:b:pull"',
    'Bearer realm="http://[fe80::1]/t"',
    'Negotiate abc==',
    '{"token":"t","access_token":"a","expires_in":300}',
):
    for pick in (0, 1):
        put("auth_challenge", bytes([pick]) + h.encode())

# manifest: a served-type pick byte, then a document.
D = "sha256:" + "a" * 64
desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D, "size": 1}
docs = [
    {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D, "size": 2},
     "layers": [desc], "annotations": {"a": "b"}},
    {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
     "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": D,
                    "size": 3, "platform": {"architecture": "amd64", "os": "linux"}}]},
    {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
     "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": D, "size": 2},
     "layers": [dict(desc, mediaType="application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                     urls=["https://x"])]},
    {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
     "manifests": [{"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "digest": D, "size": 3,
                    "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}}]},
    {"schemaVersion": 1, "fsLayers": []},
    {"schemaVersion": 2, "manifests": [], "layers": []},
]
for i, doc in enumerate(docs):
    for pick in range(8):
        if pick in (0, i + 1, 5):
            put("manifest", bytes([pick]) + json.dumps(doc).encode())
