"""The registry: content-hash versions, immutable copies, tenants, aliases, promote and stack-like rollback."""

from __future__ import annotations

import json
import shutil

import pytest

from goldmine.errors import ConfigError, ModelError
from goldmine.inference.ensemble import build_ensemble
from goldmine.inference.model import Model
from goldmine.serving.errors import Conflict, NotFound
from goldmine.serving.registry import content_hash, list_models, promote, register, resolve, rollback


@pytest.fixture
def two_dirs(tiny_run, tmp_path):
    """The tiny classification run and a copy with one changed byte of config (a different version)."""
    first = tiny_run("classification")
    second = tmp_path / "second"
    shutil.copytree(first, second)
    meta = json.loads((second / "goldmine.json").read_text())
    meta["extra"]["note"] = "retrained"
    (second / "goldmine.json").write_text(json.dumps(meta))
    return first, second


def test_same_content_same_version(db, settings, two_dirs, tmp_path):
    first, second = two_dirs
    a = register(db, settings.registry_dir, "intents", first, "acme")
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    shutil.rmtree(copy / "checkpoints", ignore_errors=True)  # training leftovers do not make the model
    again = register(db, settings.registry_dir, "intents", copy, "acme")
    assert (a.created, again.created) == (True, False)
    assert again.version == a.version == content_hash(first) and len(a.version) == 16
    b = register(db, settings.registry_dir, "intents", second, "acme")
    assert b.created and b.version != a.version


def test_version_is_an_immutable_copy(db, settings, two_dirs):
    first, _ = two_dirs
    info = register(db, settings.registry_dir, "intents", first, "acme")
    assert info.path == str((settings.registry_dir / info.version).resolve())
    assert content_hash(info.path) == info.version
    assert Model.load(info.path).predict(["where is my parcel"])[0]["label"]


def test_registry_copies_are_owner_only(db, settings, two_dirs):
    """A tenant's weights: the registry and every version copy are 0700 directories of 0600 files, although the
    source is world-readable and the umask the usual 022."""
    import os
    import stat

    first, _ = two_dirs
    os.chmod(first / "goldmine.json", 0o644)
    old = os.umask(0o022)
    try:
        info = register(db, settings.registry_dir, "intents", first, "acme")
    finally:
        os.umask(old)
    root = settings.registry_dir / info.version
    modes = {stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")] if p.is_dir()}
    assert modes == {0o700} and stat.S_IMODE(settings.registry_dir.stat().st_mode) == 0o700
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files and {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o600}
    assert [p.name for p in settings.registry_dir.iterdir()] == [info.version]  # no staging left behind


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_first_version_is_production_then_promote_and_rollback(db, settings, two_dirs):
    first, second = two_dirs
    a = register(db, settings.registry_dir, "intents", first, "acme").version
    b = register(db, settings.registry_dir, "intents", second, "acme").version
    [info] = list_models(db)
    assert info.aliases == {"production": a} and [v["version"] for v in info.versions] == [a, b]
    promote(db, "intents", b, alias="staging")
    move = promote(db, "intents", "staging")  # promote an alias's target
    assert (move.previous, move.current) == (a, b)
    with db.session() as s:
        assert resolve(s, "intents", "production").version == b
    back = rollback(db, "intents")
    assert (back.previous, back.current) == (b, a)
    with pytest.raises(Conflict, match="no earlier version"):
        rollback(db, "intents")  # the first promotion has nothing before it


def test_rollback_walks_back_like_a_stack(db, settings, two_dirs, tmp_path):
    first, second = two_dirs
    third = tmp_path / "third"
    shutil.copytree(second, third)
    (third / "labels.json").write_text((third / "labels.json").read_text() + "\n")
    a, b, c = (register(db, settings.registry_dir, "m", d, "acme").version for d in (first, second, third))
    promote(db, "m", b)
    promote(db, "m", c)
    assert rollback(db, "m").current == b
    assert rollback(db, "m").current == a
    promote(db, "m", c)
    assert rollback(db, "m").current == a


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_tenants_and_names(db, settings, two_dirs):
    first, _ = two_dirs
    register(db, settings.registry_dir, "intents", first, "acme")
    with pytest.raises(Conflict, match="belongs to another tenant"):
        register(db, settings.registry_dir, "intents", first, "globex")
    with db.session() as s, pytest.raises(NotFound, match="no model named 'intents'"):
        resolve(s, "intents", "production", tenant="globex")  # same message as a model that does not exist
    with pytest.raises(ConfigError, match="model name 'Bad Name'"):
        register(db, settings.registry_dir, "Bad Name", first, "acme")
    with pytest.raises(ModelError, match="not a goldmine model directory"):
        register(db, settings.registry_dir, "x", settings.data_dir, "acme")
    with pytest.raises(NotFound, match="no alias or version 'nope'"):
        promote(db, "intents", "nope")
    assert [m.name for m in list_models(db, "globex")] == []


def test_ensemble_is_copied_with_its_members(db, settings, two_dirs, tmp_path):
    first, second = two_dirs
    ens = build_ensemble([first, second], tmp_path / "ens")
    info = register(db, settings.registry_dir, "ens", ens, "acme")
    meta = json.loads((settings.registry_dir / info.version / "goldmine.json").read_text())
    assert meta["members"] == ["member-0", "member-1"]
    assert content_hash(info.path) == info.version
    texts = ["refund please", "my card is lost"]
    assert Model.load(info.path).predict(texts) == Model.load(ens).predict(texts)


def test_rollback_target_moves_nothing(db, settings, two_dirs):
    from goldmine.serving.registry import rollback_target

    first, second = two_dirs
    a = register(db, settings.registry_dir, "m", first, "acme").version
    b = register(db, settings.registry_dir, "m", second, "acme").version
    promote(db, "m", b)
    assert rollback_target(db, "m") == a
    with db.session() as s:
        assert resolve(s, "m", "production").version == b
