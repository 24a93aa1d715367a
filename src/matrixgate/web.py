"""The web UI: Buildbot's waterfall (the landing page), console and grid, authz, hooks."""

from __future__ import annotations

from buildbot.plugins import util

from .auth import build_auth, build_authz
from .hooks import SignedGitHook
from .settings import Settings

VIEW_PLUGINS = ("waterfall_view", "console_view", "grid_view")


def change_hook_dialects(settings: Settings) -> dict:
    """Each dialect takes its secret from the secrets provider (file or environment)."""
    return {
        "github": {"secret": util.Secret("github-webhook-secret"), "strict": True},
        "gitlab": {"secret": util.Secret("gitlab-webhook-secret")},
        "git": {"custom_class": SignedGitHook, "secret": util.Secret("git-hook-secret"),
                "repository": settings.repo_url},
    }


def build_www(settings: Settings, extra_plugins: dict | None = None) -> dict:
    plugins = {name: {} for name in VIEW_PLUGINS}
    plugins.update(extra_plugins or {})
    return {
        "port": f"tcp:{settings.web_port}:interface={settings.web_host}",
        "plugins": plugins,
        "default_page": "waterfall",
        "auth": build_auth(settings.secrets_dir),
        "authz": build_authz(),
        "change_hook_dialects": change_hook_dialects(settings),
        "ui_default_config": {"Waterfall.number_background_waterfall": True},
    }
