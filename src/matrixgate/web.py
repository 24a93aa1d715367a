"""The web UI: Buildbot's waterfall (the landing page), console and grid, authz, hooks."""

from __future__ import annotations

from importlib.metadata import entry_points

from buildbot.plugins import util
from twisted.python import log

from .auth import build_auth, build_authz
from .hooks import LimitedGitHubHandler, LimitedGitLabHandler, SignedGitHook
from .settings import Settings

VIEW_PLUGINS = ("waterfall_view", "console_view", "grid_view")


def landing_plugin() -> dict:
    """Buildbot 4.3's UI ignores ``www['default_page']`` and always opens Home; our small www
    plugin (``matrixgate.www_landing``) sends a bare visit to the waterfall instead.  It is
    found through its entry point, so a stale install (``pip install -e .`` not re-run) only
    loses the redirect instead of failing the master's start."""
    from .www_landing import NAME
    if not entry_points(group="buildbot.www", name=NAME):
        log.msg(f"matrixgate: www plugin {NAME} is not installed (re-run `pip install -e .`): "
                "the UI opens on Home instead of the waterfall")
        return {}
    return {NAME: {}}


def change_hook_dialects(settings: Settings) -> dict:
    """Each dialect takes its secret from the secrets provider (file or environment).

    GitHub and GitLab use Buildbot's handlers through size-bounded subclasses (``hooks``)."""
    return {
        "github": {"custom_class": LimitedGitHubHandler, "secret": util.Secret("github-webhook-secret"),
                   "strict": True},
        "gitlab": {"custom_class": LimitedGitLabHandler, "secret": util.Secret("gitlab-webhook-secret")},
        "git": {"custom_class": SignedGitHook, "secret": util.Secret("git-hook-secret"),
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
