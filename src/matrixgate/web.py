"""The web UI: Buildbot's waterfall (the landing page), console and grid, authz, hooks."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution

from buildbot.process.properties import Secret
from twisted.python import log

from .auth import build_auth, build_authz
from .settings import Settings

VIEW_PLUGINS = ("waterfall_view", "console_view", "grid_view")


def landing_plugin() -> dict:
    """Buildbot 4.3's UI ignores ``www['default_page']`` and always opens Home; our small www
    plugin (``matrixgate.www_landing``) sends a bare visit to the waterfall instead.  It is
    found through its entry point, so a stale install (``pip install -e .`` not re-run) only
    loses the redirect instead of failing the master's start."""
    from .www_landing import NAME
    if not _has_entry_point("buildbot.www", NAME):
        log.msg(f"matrixgate: www plugin {NAME} is not installed (re-run `pip install -e .`): "
                "the UI opens on Home instead of the waterfall")
        return {}
    return {NAME: {}}


def _has_entry_point(group: str, name: str) -> bool:
    """Is ``name`` in ``group`` among this package's installed entry points?  Reads only
    matrixgate's own metadata: ``entry_points()`` reads every installed package's."""
    try:
        found = distribution("matrixgate").entry_points
    except PackageNotFoundError:
        return False
    return any(ep.group == group and ep.name == name for ep in found)


# Buildbot's change hook resource makes a dialect's handler with ``custom_class(master,
# options)`` when that dialect's first hook arrives.  These functions import the handlers
# then, so Buildbot's GitHub and GitLab handler modules (and their imports) cost nothing
# at checkconfig or start-up.

def github_handler(master, options):
    from .hooks import LimitedGitHubHandler
    return LimitedGitHubHandler(master, options)


def gitlab_handler(master, options):
    from .hooks import LimitedGitLabHandler
    return LimitedGitLabHandler(master, options)


def git_handler(master, options):
    from .hooks import SignedGitHook
    return SignedGitHook(master, options)


def change_hook_dialects(settings: Settings) -> dict:
    """Each dialect takes its secret from the secrets provider (file or environment).

    GitHub and GitLab use Buildbot's handlers through size-bounded subclasses (``hooks``)."""
    return {
        "github": {"custom_class": github_handler, "secret": Secret("github-webhook-secret"),
                   "strict": True},
        "gitlab": {"custom_class": gitlab_handler, "secret": Secret("gitlab-webhook-secret")},
        "git": {"custom_class": git_handler, "secret": Secret("git-hook-secret"),
                "repository": settings.repo_url},
    }


def build_www(settings: Settings, extra_plugins: dict | None = None) -> dict:
    plugins = {name: {} for name in VIEW_PLUGINS}
    plugins.update(landing_plugin())
    plugins.update(extra_plugins or {})
    return {
        "port": f"tcp:{settings.web_port}:interface={settings.web_host}",
        "plugins": plugins,
        "auth": build_auth(settings.secrets_dir),
        "authz": build_authz(),
        "change_hook_dialects": change_hook_dialects(settings),
        # Builders without builds yet (an on-request leg, publish) still get their column.
        "ui_default_config": {"Waterfall.number_background_waterfall": True,
                              "Waterfall.show_builders_without_builds": True},
    }
