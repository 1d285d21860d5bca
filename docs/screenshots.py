"""Screenshots of the web UI's main pages, light and dark, for docs/ui.md (``make screenshots``).

Starts ``lorareg serve`` on the embedded defaults in a temporary LOREG_HOME, pushes the same content the
browser tests do (tests/ui/conftest.py ``publish``: a tiny base, adapters with a model card, tags, labels,
evals, a merge and a diff, all through the CLI), then saves each page from Debian's Chromium.
"""

from __future__ import annotations

import copy
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' helpers, dev-only

from playwright.sync_api import sync_playwright

from registry.adapters.base_manifest import read_base_manifest
from tests.conftest import TinyBase, make_adapter, make_base  # the example script's tiny models
from tests.server_process import running_server
from tests.ui.conftest import CHROMIUM, Site, publish

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "ui"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = make_base(work / "base", seed=0)
        base = TinyBase(work / "base", model, read_base_manifest(work / "base").content_digest)

        def adapter(seed: int = 1, r: int = 8) -> Path:
            path = work / f"adapter-{seed}-{r}"
            if not path.exists():
                make_adapter(copy.deepcopy(model), path, seed=seed, r=r)
            return path

        with running_server(work / "home", {}) as url:
            site = Site(url=url, home=work / "home", database_url=f"sqlite:///{work / 'home' / 'lorareg.db'}")
            content = publish(site, base, adapter, work)
            pages = {
                "search": "/",
                "repository": f"/{content.repo}",
                "version": f"/{content.repo}/v/1",
                "compare": f"/{content.repo}/compare/1...2",
                "base": f"/bases/{content.base}",
                "jobs": "/jobs",
            }
            OUT.mkdir(exist_ok=True)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                for scheme in ("light", "dark"):
                    context = browser.new_context(
                        viewport={"width": 1280, "height": 860}, color_scheme=scheme
                    )
                    page = context.new_page()
                    for name, path in pages.items():
                        page.goto(url + path)
                        page.screenshot(path=OUT / f"{name}-{scheme}.png", full_page=False)
                        print(f"docs/ui/{name}-{scheme}.png  {path}")
                    context.close()
                browser.close()


if __name__ == "__main__":
    main()
