"""The applications a customer buys, each built on the platform's stages: a package `apps/<name>/` with its config,
Python API, CLI (`goldmine app <name> ...`) and HTTP router (`/v1/apps/<name>/...`, metered like predict).

Apps are found through `APPS`, like tasks and tuning strategies: each name is declared here with the module that
registers its `goldmine.apps.base.AppSpec`, imported on first use. Adding an app is one package and one line here.
"""

from __future__ import annotations

from goldmine.registry import Registry

APPS: Registry = Registry("app", {
    "medfaq": "goldmine.apps.medfaq",
    "monitor": "goldmine.apps.monitor",
    "recommend": "goldmine.apps.recommend",
    "support": "goldmine.apps.support",
})
