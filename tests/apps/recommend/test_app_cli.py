"""`goldmine app recommend ...`: build (from items + interactions files, or a MovieLens directory), recommend, add
items and interactions, show, save-encoder, fit, and the offline demo; errors exit 2 with the reason."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from goldmine.apps.recommend.demo import NEW_BOOK, run_app_demo, write_demo_data
from goldmine.cli import app


@pytest.fixture
def cli(settings, db, encoder, recommend_config, tmp_path):
    """`cli(*args)`: a goldmine command with the serving config (which lists the app config) appended."""
    serving = tmp_path / "serving.yaml"
    serving.write_text(yaml.safe_dump({"data_dir": str(settings.data_dir), "database_url": settings.url,
                                       "apps": [str(recommend_config())]}))
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, ["app", "recommend", *args, "--config", str(serving)])

    return run


def test_build_recommend_add_show(cli, tmp_path):
    files = write_demo_data(tmp_path / "data")
    built = cli("build", "--items", str(files.items), "--interactions", str(files.interactions))
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout)["items"] == 36
    shown = cli("recommend", "u0", "--k", "3")
    assert shown.exit_code == 0, shown.output
    assert len(json.loads(shown.stdout)) == 3
    cooking = cli("recommend", "--history", "b00,b01", "--category", "Cooking", "--k", "2")
    assert [a["item_id"][:2] for a in json.loads(cooking.stdout)] == ["b2", "b2"]  # shelf 2: Cooking
    new = tmp_path / "new.jsonl"
    new.write_text(json.dumps(NEW_BOOK.to_dict()) + "\n")
    added = cli("add-items", str(new))
    assert added.exit_code == 0 and json.loads(added.stdout) == {"added": 1, "items": 37}, added.output
    again = cli("add-items", str(new))
    assert again.exit_code == 2 and "already in the catalog" in again.output
    ratings = tmp_path / "more.csv"
    ratings.write_text("user_id,item_id,rating\nzoe,new-1,5\nzoe,ghost,4\n")
    counted = cli("add-interactions", str(ratings))
    assert counted.exit_code == 0, counted.output
    assert "1 interaction(s) with items not in the catalog skipped" in " ".join(counted.output.split())
    assert cli("recommend", "zoe", "--k", "1").exit_code == 0
    unknown = cli("recommend", "nobody")
    assert unknown.exit_code == 2 and "unknown user 'nobody'" in unknown.output
    bad_k = cli("recommend", "u0", "--k", "0")
    assert bad_k.exit_code == 2 and "k: give a whole number from 1 to 100" in bad_k.output
    state = json.loads(cli("show").output)
    assert (state["items"], state["users"], state["encoder"]["name"]) == (37, 41, "shop-encoder")


def test_build_from_movielens(cli, tmp_path, bookshop):
    items, interactions = bookshop
    movies = tmp_path / "ml"
    movies.mkdir()
    (movies / "movies.csv").write_text("movieId,title,genres\n" + "".join(
        f'{i.id},"{i.title}",{"|".join(i.categories)}\n' for i in items))
    (movies / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "".join(
        f"{e.user_id},{e.item_id},{e.rating},{int(e.timestamp)}\n" for e in interactions) + "u1,999,5,1\n")
    (movies / "tags.csv").write_text("userId,movieId,tag,timestamp\nu1,b00,cosy,1\n")
    built = cli("build", "--movielens", str(movies))
    assert built.exit_code == 0, built.output
    state = json.loads(built.stdout)
    assert (state["items"], state["users"], state["report"]["unknown_item_interactions"]) == (36, 40, 1)
    assert cli("recommend", "u1", "--k", "2").exit_code == 0
    both = cli("build", "--movielens", str(movies), "--items", str(movies / "movies.csv"))
    assert both.exit_code == 2 and "not both" in both.output


def test_fit_registers_a_new_encoder_version_and_builds_on_it(cli, tmp_path, encoder, tiny_encoder_dir):
    files = write_demo_data(tmp_path / "data")
    fitted = cli("fit", "--items", str(files.items), "--interactions", str(files.interactions), "--base-model",
                 str(tiny_encoder_dir), "--steps", "2")
    assert fitted.exit_code == 0, fitted.output
    shown = json.loads(fitted.stdout)
    assert shown["registered"]["version"] != encoder.version
    assert shown["encoder"]["version"] == shown["registered"]["version"]  # the production alias followed
    assert cli("recommend", "u0", "--k", "2").exit_code == 0


def test_app_demo_runs_offline(tmp_path, tiny_encoder_dir):
    shown = run_app_demo(tmp_path / "demo", base_model=str(tiny_encoder_dir), k=3)
    assert set(shown["recommendations"]) == {"u0", "u1", "u2"}
    assert all(len(a) == 3 for a in shown["recommendations"].values())
    assert shown["after_new_item"] and (tmp_path / "demo" / "recommend.yaml").is_file()
    for user, answers in shown["recommendations"].items():
        for answer in answers:
            assert {c["item_id"] for c in answer["explanation"]["similar_to"]} <= set(shown["liked"][user])
    again = CliRunner().invoke(app, ["app", "recommend", "demo", "--out", str(tmp_path / "demo2"), "--base-model",
                                     str(tiny_encoder_dir), "--k", "2"])
    assert again.exit_code == 0, again.output
    assert "after adding 'The Last Starship Colony'" in again.output and "reader u0:" in again.output
